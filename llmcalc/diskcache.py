"""The on-disk cache: parsed YAML data files, and the replayed allocation orders' peaks.

Both are pure functions of files on disk, so a stale entry is impossible by construction: every
entry is keyed by the size and modification time of what it was computed from. The cache only
saves start-up time (PyYAML's import is ~25 ms of a ~250 ms command on a 2-core machine, most of
it compiling its scanner's regular expressions); a cache that cannot be read or written is
skipped, with the same answer.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """$LLMCALC_CACHE_DIR, else $XDG_CACHE_HOME/llmcalc, else ~/.cache/llmcalc."""
    if os.environ.get("LLMCALC_CACHE_DIR"):
        return Path(os.environ["LLMCALC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmcalc"


def write_json(path: Path, data: Any) -> None:
    """Atomically (a temporary file, then a rename); a read-only cache directory is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass


class YamlError(Exception):
    """The file is not valid YAML: `line` is 1-based, or None when the parser did not say."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def load_yaml(path: Path) -> Any:
    """yaml.safe_load of the file (libyaml's loader where PyYAML has it), from the cache when the
    file's size and modification time are those it was parsed at. Only data that JSON keeps
    unchanged is cached (mappings with string keys, lists, strings, numbers, booleans, null);
    anything else is parsed every time. Raises OSError when the file cannot be read and
    YamlError when it is not YAML."""
    st = path.stat()
    stamp = [str(path.resolve()), st.st_size, st.st_mtime_ns]
    # One entry per file, named by a checksum of its path; the stamp inside decides.
    entry = cache_dir() / "yaml" / f"{path.stem}-{zlib.crc32(stamp[0].encode()):08x}.json"
    try:
        cached = json.loads(entry.read_text(encoding="utf-8"))
        if isinstance(cached, dict) and cached.get("stamp") == stamp:
            return cached["data"]
    except (OSError, ValueError):
        pass
    import yaml  # only on a cache miss

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        first = str(exc).splitlines()[0] if str(exc) else "not valid YAML"
        raise YamlError(first, mark.line + 1 if mark else None) from None
    try:
        if json.loads(json.dumps(data)) == data:
            write_json(entry, {"stamp": stamp, "data": data})
    except (TypeError, ValueError):  # dates, non-string keys, NaN: not cached
        pass
    return data


_PEAKS: dict[str, tuple[int, ...]] = {}


def cached_peaks(key: object, sources: Sequence[Path], replay: Callable[[], tuple[int, ...]]) -> tuple[int, ...]:
    """replay() = a replayed allocation order's figures (alloc_order: peak allocated and peak
    reserved; recorded: its events first), kept in memory and on disk: a replay is ~4 us per event (60-90 ms for an 8B model's 17,500-event inference order,
    0.6 s for a recorded 80,000-allocation one, on a 2-core machine) and the same for the same
    key. The key covers `key` and the size and modification time of the files that define the
    replay (`sources`), so an edit to any of them invalidates it."""
    stamp = [(f.stat().st_size, f.stat().st_mtime_ns) for f in sources]
    # A 64-bit checksum of the key's text plus its length: two checksums zlib computes in C
    # (hashlib would load OpenSSL, ~5 ms of the start); among the 512 entries kept, the chance of
    # a collision is about 512^2 / 2^65 = 7e-15.
    text = repr((key, stamp)).encode()
    name = f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}-{len(text):x}"
    if name in _PEAKS:
        return _PEAKS[name]
    path = cache_dir() / "alloc-order-peaks.json"
    stored: dict[str, list[int]] = {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    if isinstance(stored.get(name), list) and stored[name]:
        _PEAKS[name] = tuple(int(v) for v in stored[name])
        return _PEAKS[name]
    _PEAKS[name] = replay()
    stored = {k: v for k, v in list(stored.items())[-511:] if isinstance(v, list)}  # the 512 most recent
    stored[name] = list(_PEAKS[name])
    write_json(path, stored)
    return _PEAKS[name]
