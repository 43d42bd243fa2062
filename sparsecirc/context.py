"""What a producer is handed: :class:`BuildContext`, so nothing below :mod:`sparsecirc.build` imports it.

A producer (``produce_circuits``, ``addition.produce_sparse``, ...) turns an artifact's config
``data/configs/<id>.yaml`` into files in ``ctx.folder``. It reads its settings with :meth:`BuildContext.config`,
loads the artifacts it depends on with :meth:`BuildContext.dep` (``build`` decides whether that verifies a
committed folder or builds a cache copy) and writes its manifest with :meth:`BuildContext.manifest_info`::

    def produce_thing(ctx: BuildContext) -> None:
        cfg = ctx.config()
        dense = ctx.dep("wst-zoo-l2d128-dense-s0")          # a loaded Run
        ...
        artifacts.write_manifest(ctx.folder, files, **ctx.manifest_info(kind="thing", seed=cfg.train.seed))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sparsecirc.artifacts import Run, rebuild_command
from sparsecirc.core.config import RunConfig, make_config, scale_overrides


@dataclass
class BuildContext:
    """One artifact being built at one scale.

    Attributes:
        artifact_id: registry key, also the config file's stem.
        scale: ``"book"`` or ``"ci"``.
        folder: where the producer writes (``data/artifacts/<id>`` or a cache folder).
        spec: the parsed config file (``kind``, ``scales``, ``paper_ref``, ``used_by``, extra keys).
        progress: show progress bars.
        resume: continue an interrupted build (only producers whose kind is listed as resumable see True).
        load_dep: ``load_dep(artifact_id) -> Run``, supplied by :mod:`sparsecirc.build`.
    """

    artifact_id: str
    scale: str
    folder: Path
    spec: dict
    progress: bool
    resume: bool
    load_dep: Callable[[str], Run]

    def overrides(self) -> dict[str, Any]:
        """The config file's overrides at this scale (``{}`` when the scale has none)."""
        return scale_overrides(self.spec, self.scale, f"data/configs/{self.artifact_id}.yaml")

    def config(self) -> RunConfig:
        """The effective RunConfig: the scale's preset plus the config file's overrides."""
        return make_config(self.scale, **self.overrides())

    def split_config(self, section: str = "geco") -> tuple[RunConfig, dict]:
        """(RunConfig, the overrides' extra ``section``) -- e.g. GECO's settings, which are not a RunConfig
        field; the section is ``{}`` when the config has none."""
        over = self.overrides()
        extra = over.pop(section, {})
        return make_config(self.scale, **over), extra

    def dep(self, artifact_id: str) -> Run:
        """Load an artifact this one depends on, at the same scale."""
        return self.load_dep(artifact_id)

    @property
    def produced_by(self) -> str:
        return rebuild_command(self.artifact_id, self.scale)

    def manifest_info(self, **info: Any) -> dict[str, Any]:
        """The fields every manifest carries (id, scale, the command that rebuilds it) plus ``info``."""
        return {"id": self.artifact_id, "scale": self.scale, **info, "produced_by": self.produced_by}
