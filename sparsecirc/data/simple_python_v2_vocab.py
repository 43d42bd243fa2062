"""Vocabulary of the version-2 simple-Python generator (``simple_python_v2``): names, words, files, phrases.

Only data lives here (plain lists of ASCII strings), so that the generator modules stay readable. The pools are
several times larger than version 1's and overlap with ordinary Python naming; identifiers are further combined
by the generator (``max_count``, ``user_ids``, ``row2``), so the space of names is far larger than the lists.
Every identifier here is checked against :mod:`keyword` when the module is imported.

Example:
    >>> from sparsecirc.data.simple_python_v2_vocab import NOUNS, READ_FILES
    >>> ("item", "items") in NOUNS and "input" in READ_FILES
    True
"""
from __future__ import annotations

import keyword


def _words(text: str) -> list[str]:
    return text.split()


NOUNS = [tuple(p.split("/")) for p in _words("""
item/items value/values name/names word/words number/numbers score/scores line/lines row/rows record/records
user/users file/files path/paths key/keys label/labels tag/tags color/colors price/prices point/points node/nodes
edge/edges task/tasks job/jobs event/events message/messages token/tokens city/cities student/students
grade/grades book/books page/pages order/orders product/products entry/entries char/chars letter/letters
digit/digits card/cards player/players game/games step/steps result/results error/errors person/people
child/children box/boxes match/matches query/queries country/countries animal/animals fruit/fruits car/cars
song/songs movie/movies email/emails account/accounts sample/samples pixel/pixels cell/cells col/cols
block/blocks chunk/chunks part/parts piece/pieces field/fields column/columns header/headers url/urls
host/hosts port/ports packet/packets request/requests response/responses element/elements pair/pairs
coord/coords vertex/vertices shape/shapes size/sizes weight/weights reading/readings temp/temps day/days
month/months year/years date/dates ticket/tickets seat/seats room/rooms guest/guests member/members team/teams
friend/friends contact/contacts note/notes comment/comments post/posts review/reviews rating/ratings vote/votes
trade/trades stock/stocks coin/coins bill/bills payment/payments town/towns lesson/lessons module/modules
image/images frame/frames layer/layers batch/batches epoch/epochs feature/features vector/vectors
matrix/matrices table/tables query/queries symbol/symbols rule/rules pattern/patterns option/options
setting/settings param/params arg/args command/commands session/sessions device/devices sensor/sensors
signal/signals channel/channels buffer/buffers worker/workers thread/threads process/processes
invoice/invoices customer/customers supplier/suppliers warehouse/warehouses address/addresses phone/phones
recipe/recipes ingredient/ingredients planet/planets star/stars route/routes stop/stops trip/trips
flight/flights ship/ships track/tracks album/albums artist/artists photo/photos video/videos file_name/file_names
document/documents sentence/sentences paragraph/paragraphs chapter/chapters author/authors reader/readers
widget/widgets button/buttons window/windows menu/menus icon/icons theme/themes font/fonts branch/branches
commit/commits issue/issues version/versions release/releases package/packages
""")]
SCALARS = _words("""total count result index offset limit size length width height depth level start end step
delta margin threshold target best worst average mean maximum minimum low high left right top bottom counter
amount balance speed distance capacity budget score_sum max_len min_val max_val num_rows num_cols radius area
volume ratio rate factor scale weight cost price tax discount interest timeout retries attempts elapsed
duration position cursor head tail mid lo hi acc tmp temp value flag mode status code n m k x y z a b c i j
p q r s t u v w dx dy total_cost row_count col_count max_size min_size page_size batch_size n_items""")
ADJECTIVES = _words("""max min total num first last next prev new old raw clean sorted unique best current
default valid invalid active pending final initial local global base top main extra temp avg""")
FLAGS = _words("""done found ready valid running active finished changed visible enabled debug verbose success
matched is_empty has_error stopped is_open is_ready complete dirty locked paused cancelled is_valid is_admin
has_data keep_going needs_update is_full is_done ok quiet strict dry_run use_cache""")
VERBS = _words("""get compute calculate load save parse find check update build make process format count
filter merge split clean read write sum add remove sort show validate convert normalize collect group scale
reset apply handle render send fetch search insert summarize encode decode flatten parse_args extract
transform prepare register resolve lookup compare rank score train evaluate predict export
""")
PREDICATES = _words("""is_valid is_empty has_key contains is_even is_odd is_prime is_sorted all_positive
any_negative can_move is_member has_duplicates is_palindrome is_ready exists is_within is_allowed is_visible
matches has_access is_leap_year is_balanced is_subset is_connected can_afford is_expired""")
CLASSES = _words("""Point Node User Account Matrix Config Parser Counter Tracker Player Item Order Record Student
Book Car Shape Circle Rectangle Vector Queue Stack Timer Logger Cache Graph Edge Task Game Board Card Deck Bank
Library Inventory Product Employee Course Ticket Room Robot Sensor Window Button Message Session Team Recipe
Animal Planet Invoice Customer Wallet Engine Scheduler Buffer Reader Writer Tokenizer Model Layer Dataset
Request Response Client Server Handler Event Route Store Portfolio Sprite Level Thermostat Playlist Song""")
WORDS = _words("""hello world done error ready start stop yes no ok loading saving finished missing found
invalid unknown default admin guest red green blue apple banana cherry alice bob carol dave erin frank north
south east west small medium large low high on off name value total count processing result warning average
welcome goodbye success failed retry skip empty full open closed active pending new old left right up down
data input output file line row item key label tag text message summary report status config user password
email address city country price amount date time day week month year first last next previous page home
search help about contact login logout submit cancel save delete update create edit view list show hide
enabled disabled true false none null zero one two three four five ten hundred alpha beta gamma delta
orange grape lemon mango peach tomato potato onion carrot coffee tea milk water bread cheese rice
cat dog bird fish horse mouse lion tiger bear wolf fox owl sun moon star cloud rain snow wind fire stone""")
CAPS = _words("""Total Result Average Count Name Score Done Error Warning Value Processing Loaded Saved Found
Missing Hello Status Best Max Min Welcome Starting Finished Usage Summary Report Invalid Unknown Ready Sum
Mean Progress Step Epoch Loss Accuracy Items Users Files Skipping Reading Writing Checking Updating Note""")
PHRASES = [
    "it's", "don't", "can't", "won't", "isn't", "doesn't", "you're", "we'll", "I'm", "that's", "let's",
    "there's", "what's", "o'clock", "rock 'n' roll", "Bob's", "user's", "today's", "it's done", "don't panic",
]
QUOTED = ['say "hi"', 'the "best" one', 'a "quoted" word', 'he said "no"', 'type "yes" to continue',
          'press "q" to quit', 'value is "{}"', 'key="value"', '"name": "bob"', 'use "utf-8"']
SEPARATORS = [",", " ", ":", ";", "|", "\\t", "\\n", "-", "_", "/", ", ", " | ", "=", "->", ".", ""]
FORMATS = ["%d items", "%s: %s", "%.2f", "{} found", "{:>10}", "{0} and {1}", "%s=%d", "{name}: {value}",
           "[%s]", "(%d, %d)", "{:.3f}", "%5.1f%%", "<{}>", "{!r}"]
READ_FILES = _words("""input data config source words names records scores settings users notes numbers
dictionary vocab inventory students prices contacts readings samples train test questions template
params corpus lines stopwords emails cities grades orders""")
WRITE_FILES = _words("""output result results report summary backup out export saved log_out totals
stats answers predictions cleaned sorted_names merged filtered summary_out report_final dump copy
new_data processed archive""")
APPEND_FILES = _words("app events history audit journal activity access errors")
EXTS = _words("txt txt txt csv csv json log dat md tsv ini yaml xml html")
DIRS = ["data/", "out/", "tmp/", "logs/", "input/", "results/", "./", "../data/", "files/", "reports/"]
MODULES = _words("""os sys re json math random time string collections itertools functools csv pathlib
datetime statistics typing logging argparse heapq bisect copy textwrap""")
FROM_IMPORTS = ["from collections import Counter", "from collections import defaultdict",
                "from pathlib import Path", "from typing import List, Optional", "from dataclasses import dataclass",
                "from itertools import chain", "from functools import reduce", "from math import sqrt, pi",
                "from datetime import date", "from random import choice, randint", "import os.path",
                "from typing import Dict", "from collections import deque", "from operator import itemgetter"]
EXCEPTIONS = _words("""ValueError KeyError IndexError TypeError RuntimeError ZeroDivisionError FileNotFoundError
OSError AttributeError StopIteration LookupError""")
FUNCS = _words("""len sum min max sorted reversed abs round str int float list tuple set dict any all repr
enumerate zip range map filter""")
COMMENTS = ["TODO: handle the {w} case", "load the {w} data", "returns {{{w}: count}}", "shape is [rows, cols]",
            "see {w}[0] for the first one", "(optional) {w}", "compute the {w} total", "check {w} before use",
            "list of [{w}, {w2}] pairs", "keep a set() of seen {w}s", "note: {w} may be None",
            "step {n}: update the {w}", "FIXME: {w} is slow", "{w} -> {w2}", "don't touch {w}", "the \"{w}\" field",
            "skip empty {w}s", "{n} is the default", "XXX: remove {w} later", "sort by {w}, then {w2}",
            "'{w}' or \"{w2}\"", "e.g. [[1, 2], [3]]", "{{'{w}': [{n}]}}", "see issue #{n}", "{w} ({w2}) in place"]
DOC_LINES = ["Return the {w} of each {w2}.", "Load {w2}s from a file.", "Compute the {w} total.",
             "A small helper for {w}s.", "Count how many {w2}s match.", "Check that the {w} is valid.",
             "Build the {w} table.", "Print a summary of the {w2}s.", "Split {w} into parts.",
             "Merge two lists of {w2}s."]

_IDENTIFIERS = [n for p in NOUNS for n in p] + SCALARS + FLAGS + PREDICATES
assert not [n for n in _IDENTIFIERS if keyword.iskeyword(n) or not n.isidentifier()], "bad identifier in vocab"
