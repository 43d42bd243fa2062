"""The book's machinery: chapters (toc, parameters, papermill), ``CLAIM`` lines and the scorecard.

Command line: ``python -m sparsecirc.book {list,execute,scorecard,check-html}`` (see ``__main__``).
"""
