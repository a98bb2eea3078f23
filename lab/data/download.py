"""Bring datasets up to date under the data dir: verified, resumable, in torchvision's layout.

For each file of each dataset, cheapest first:
1. present: the manifest vouches for it (size + mtime unchanged since it was verified) and
   for what was unpacked from it; nothing is hashed, no request is made;
2. restored: the downloaded file is here and checks out, only its unpacked copy is missing;
3. downloaded: fetched from the mirrors in order (resuming any part file), verified, renamed
   into place, then unpacked (a crash in between leaves case 2 for the rerun).
All files are handled in parallel; ``--jobs`` caps the connections of the whole run.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lab.data.extract import CorruptArchive, UnsafeArchive, extract, gunzip, layout_problems
from lab.data.fetch import Transfer
from lab.data.hashing import PIN, hash_file, mismatch, published
from lab.data.lock import DataDirLock
from lab.data.registry import DatasetSpec, FileSpec, Registry
from lab.data.store import Manifest, fsync_dir, remove_stale_temps
from lab.data.transport import Cancelled, FetchError, Transport

HINT = (
    "check the connection and rerun (it resumes where it stopped), or use --registry FILE "
    "to point at a mirror you can reach"
)
# A refused archive is no network trouble: rerunning fetches the same file again.
REFUSED_HINT = (
    "the mirror serves an archive that is not safe to unpack (nothing of it was kept); "
    "use --registry FILE to point at a trustworthy mirror"
)


class Refused(str):
    """What is wrong with a fetched archive that was refused as unsafe (not a network fault)."""


class DownloadFailed(Exception):
    """One line: dataset, URL, cause, and what to do."""


@dataclass
class FileReport:
    name: str
    status: str  # present | restored | downloaded
    url: str | None = None
    fetched: int = 0  # bytes received in this run
    resumed: int = 0  # bytes a part file already had


@dataclass
class DatasetReport:
    name: str
    path: str
    status: str = "present"
    files: list[FileReport] = field(default_factory=list)


class Run:
    def __init__(self, registry: Registry, data_dir: Path, jobs: int, reporter) -> None:
        self.registry = registry
        self.root = Path(data_dir)
        self.reporter = reporter
        self.transport = Transport(registry.fetch, jobs)
        self.manifest: Manifest | None = None

    # --- checks that make no request -----------------------------------------------------
    def _sums_ok(self, spec: FileSpec, sums: dict) -> bool:
        if published(spec):
            return mismatch(published(spec), sums) is None
        pin = self.manifest.pin(spec.key)
        return pin is None or sums.get(PIN) == pin

    def _verified_source(self, spec: FileSpec) -> dict | None:
        """Checksums of the downloaded file when it is here and correct (hashing only if new)."""
        path = self.root / spec.relpath
        entry = self.manifest.trusted(self.root, spec.relpath)
        if entry is not None and self._sums_ok(spec, entry):
            return entry
        if not path.is_file():
            return None
        sums = hash_file(path)
        if not self._sums_ok(spec, sums):
            path.unlink()  # corrupt or changed copy: fetch it again
            self.manifest.forget(spec.relpath)
            return None
        self.manifest.record_file(self.root, spec.relpath, sums)
        return sums

    def _unpacked(self, ds: DatasetSpec, spec: FileSpec, source: dict | None) -> bool:
        if spec.unpack == "gunzip":
            out = self.manifest.trusted(self.root, spec.relpath.removesuffix(".gz"))
            return bool(source and out and out.get("source") == source.get(PIN))
        if spec.unpack == "extract":
            sums = self.manifest.unpacked_sums(ds.dir)
            pinned = published(spec) or self.manifest.pin(spec.key)
            return bool(
                sums
                and pinned
                and self._sums_ok(spec, sums)
                and not layout_problems(self.root, ds.layout or {ds.dir: []})
            )
        return source is not None

    # --- unpacking -------------------------------------------------------------------------
    def _unpack(self, ds: DatasetSpec, spec: FileSpec, source_path: Path, sums: dict) -> None:
        if spec.unpack == "gunzip":
            rel = spec.relpath.removesuffix(".gz")
            gunzip(source_path, self.root / rel)
            self.manifest.record_file(self.root, rel, {}, source=sums[PIN])
        elif spec.unpack == "extract":
            extract(source_path, self.root, ds.dir, ds.layout)
            self.manifest.set_unpacked(ds.dir, sums)

    # --- one file ---------------------------------------------------------------------------
    def ensure(self, ds: DatasetSpec, spec: FileSpec) -> FileReport:
        source = self._verified_source(spec)
        if self._unpacked(ds, spec, source):
            self._drop_leftovers(spec)
            return FileReport(spec.name, "present")
        if source is not None:
            try:
                self._unpack(ds, spec, self.root / spec.relpath, source)
            except (CorruptArchive, UnsafeArchive) as exc:  # a bad local copy: fetch it again
                self.reporter.say(f"{ds.name}: {exc}; downloading it again")
                (self.root / spec.relpath).unlink(missing_ok=True)
                self.manifest.forget(spec.relpath)
                return self._download(ds, spec)
            if not published(spec):
                self._pin(spec, source)
            self.reporter.say(f"{ds.name}: unpacked {spec.name} again (no download needed)")
            return FileReport(spec.name, "restored")
        return self._download(ds, spec)

    def _drop_leftovers(self, spec: FileSpec) -> None:
        """A part file (and its progress) left by a run killed after its file was complete."""
        part = self._part(spec)
        for leftover in (part, part.with_name(part.name + ".json")):
            if leftover.exists():
                try:
                    leftover.unlink()
                except OSError:
                    pass  # a read-only data dir: harmless, and a no-op rerun must not fail

    def _part(self, spec: FileSpec) -> Path:
        """Where a download of ``spec`` fills in, hidden beside its final path."""
        final = self.root / spec.relpath
        return final.with_name(f".{final.name}.part")

    def _pin(self, spec: FileSpec, sums: dict) -> None:
        if self.manifest.pin(spec.key) is None:
            self.manifest.set_pin(spec.key, sums[PIN])

    def _download(self, ds: DatasetSpec, spec: FileSpec) -> FileReport:
        part = self._part(spec)
        part.parent.mkdir(parents=True, exist_ok=True)
        self.reporter.expect(spec.size)
        tried: dict[str, str] = {}  # url -> why it failed (the last reason per mirror)
        for url in spec.urls:
            for fresh_try in (False, True):
                transfer = Transfer(
                    self.transport,
                    url,
                    part,
                    spec.size,
                    self.reporter.advance,
                    resume_from_other_url=bool(published(spec)),
                )
                try:
                    result = transfer.run()
                except FetchError as exc:
                    tried[url] = exc.cause
                    if url != spec.urls[-1]:  # the last one's cause ends up in the error line
                        self.reporter.say(f"{ds.name}: {exc}; trying the next mirror")
                    break
                problem = self._check(spec, result.sums) or self._land(ds, spec, result.sums)
                if problem is None:
                    return FileReport(spec.name, "downloaded", url, result.fetched, result.resumed)
                transfer.discard()
                self.reporter.advance(-result.size)
                tried[url] = problem
                self.reporter.say(f"{ds.name}: {url}: {problem}; discarded")
                if not result.resumed or fresh_try:
                    break  # a bad copy from this mirror: the next one may be right
                # the bytes kept from an earlier run may be the culprit: once more from scratch
        causes = "; ".join(f"{url}: {cause}" for url, cause in tried.items())
        refused = all(isinstance(cause, Refused) for cause in tried.values())
        hint = REFUSED_HINT if refused else HINT
        raise DownloadFailed(f"{ds.name}: could not get {spec.name} from {causes}; {hint}")

    def _check(self, spec: FileSpec, sums: dict) -> str | None:
        """None when the fetched file has the right checksums; else what is wrong."""
        if self._sums_ok(spec, sums):
            return None
        if published(spec):
            return mismatch(published(spec), sums)
        since = self.manifest.pins[spec.key].get("since", "earlier")
        return (
            f"{PIN} {sums[PIN]} differs from the copy verified on {since} "
            f"(if upstream really changed it, delete {self.manifest.path.name} in the data dir)"
        )

    def _land(self, ds: DatasetSpec, spec: FileSpec, sums: dict) -> str | None:
        """Move a fetched part file to its final path and unpack it; None when done, else why
        the archive is no good (then nothing of it is at the final path or on record)."""
        final, part = self.root / spec.relpath, self._part(spec)
        if published(spec):
            # The checksum vouches for it: into place and on record before unpacking, so a
            # crash from here on leaves a verified download the rerun only unpacks.
            self._place(spec, part, sums)
            problem = self._unpack_checked(ds, spec, final, sums)
            if problem is not None:
                final.unlink(missing_ok=True)
                self.manifest.forget(spec.relpath)
            return problem
        # No checksum: only a clean unpack vouches for it, so it is unpacked from the part
        # file, and placed, recorded and pinned (to catch a changed copy later) only after.
        problem = self._unpack_checked(ds, spec, part, sums)
        if problem is None:
            self._place(spec, part, sums)
            self._pin(spec, sums)
        return problem

    def _place(self, spec: FileSpec, part: Path, sums: dict) -> None:
        final = self.root / spec.relpath
        part.replace(final)
        fsync_dir(final.parent)
        self.manifest.record_file(self.root, spec.relpath, sums)

    def _unpack_checked(self, ds, spec: FileSpec, path: Path, sums: dict) -> str | None:
        """Unpack a fetched file; None when done, else why the archive is no good."""
        try:
            self._unpack(ds, spec, path, sums)
        except (UnsafeArchive, CorruptArchive) as exc:
            why = str(exc).replace(path.name, spec.name)  # its name, not its part file's
            return Refused(why) if isinstance(exc, UnsafeArchive) else why
        return None

    # --- the run ------------------------------------------------------------------------------
    def run(self, names: list[str]) -> dict:
        """Ensure every named dataset; the summary says what happened (``ok``/``errors``)."""
        started = time.monotonic()
        reports = {
            n: DatasetReport(n, str(self.root / self.registry.datasets[n].dir)) for n in names
        }
        failed: dict[str, list[str]] = {}  # dataset -> one line per file that failed
        with DataDirLock(self.root, on_wait=self.reporter.say):
            self.manifest = Manifest(self.root)  # read after the lock: a previous run's work
            folders = {self.root} | {
                (self.root / f.relpath).parent
                for n in names
                for f in self.registry.datasets[n].files
            }
            for folder in folders:
                remove_stale_temps(folder)
            work = [
                (self.registry.datasets[n], f)
                for n in names
                for f in self.registry.datasets[n].files
            ]
            pool = ThreadPoolExecutor(
                max_workers=max(1, len(work)), thread_name_prefix="lab-download"
            )
            futures = [(ds, pool.submit(self.ensure, ds, f)) for ds, f in work]
            try:
                for ds, future in futures:
                    try:
                        reports[ds.name].files.append(future.result())
                    except DownloadFailed as exc:
                        failed.setdefault(ds.name, []).append(str(exc))
                        reports[ds.name].status = "failed"
                    except Cancelled:
                        raise KeyboardInterrupt from None
            except BaseException:
                self.transport.cancel.set()  # every transfer saves its progress and stops
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                self.reporter.close()
            # one line per dataset: its first failure, and how many more files failed alike
            errors = [
                lines[0]
                + (f" (and {len(lines) - 1} more of its files failed)" if len(lines) > 1 else "")
                for lines in failed.values()
            ]
            for name, report in reports.items():
                if report.status != "failed":
                    problem = self._finish(self.registry.datasets[name], report)
                    if problem:
                        errors.append(problem)
                        report.status = "failed"
        return {
            "ok": not errors,
            "errors": errors,
            "data_dir": str(self.root),
            "requests": self.transport.requests,
            "bytes_downloaded": self.transport.bytes,
            "seconds": round(time.monotonic() - started, 3),
            "datasets": {n: _as_dict(r) for n, r in reports.items()},
        }

    def _finish(self, ds: DatasetSpec, report: DatasetReport) -> str | None:
        statuses = {f.status for f in report.files}
        report.status = next((s for s in ("downloaded", "restored") if s in statuses), "present")
        problems = layout_problems(self.root, ds.layout)
        if problems:
            return (
                f"{ds.name}: files were verified but the layout is wrong "
                f"({'; '.join(problems)}); check the registry's layout table"
            )
        return None


def _as_dict(report: DatasetReport) -> dict:
    return {"status": report.status, "path": report.path, "files": [vars(f) for f in report.files]}
