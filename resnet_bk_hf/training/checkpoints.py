"""Checkpoints you can trust: a sha256 manifest per Trainer checkpoint, and finding the newest intact one.

`write_manifest(dir)` records the size and sha256 of every file in a checkpoint folder (written last and
atomically, so its presence also says the checkpoint was finished). `verify_checkpoint(dir)` recomputes
them. `latest_valid_checkpoint(output_dir)` walks the `checkpoint-N` folders newest first, moves any that
fail (missing manifest, missing file, wrong size or hash) aside to `corrupt-checkpoint-N` (kept for
inspection, out of the way of Trainer's rotation and of later saves at the same step), and returns the
newest that passes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

MANIFEST_NAME = "checksums.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_all(files: List[Path]) -> List[str]:
    # hashlib releases the GIL on large buffers: threads overlap reading and hashing of big shards.
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(files)))) as pool:
        return list(pool.map(sha256_file, files))


def write_manifest(folder: str | Path) -> Path:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME
                   and not p.name.startswith(MANIFEST_NAME + "."))
    entries = {str(f.relative_to(folder)): {"bytes": f.stat().st_size, "sha256": h}
               for f, h in zip(files, _hash_all(files))}
    manifest = folder / MANIFEST_NAME
    tmp = folder / f"{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps({"format": 1, "files": entries}, indent=1))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, manifest)
    return manifest


def verify_checkpoint(folder: str | Path) -> Tuple[bool, str]:
    """(ok, reason): whether every file listed in the manifest is present with its size and sha256."""
    folder = Path(folder)
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return False, f"no {MANIFEST_NAME} (the save did not finish)"
    try:
        entries: Dict[str, dict] = json.loads(manifest.read_text())["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        return False, f"unreadable {MANIFEST_NAME}: {type(e).__name__}: {e}"
    # a manifest damaged in a way JSON still parses: check its shape before trusting any entry
    if not isinstance(entries, dict):
        return False, f"malformed {MANIFEST_NAME}: 'files' must map file names to entries, got {type(entries).__name__}"
    if not entries:
        return False, f"{MANIFEST_NAME} lists no files"
    for name, entry in entries.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and not isinstance(entry["bytes"], bool)
                and isinstance(entry.get("sha256"), str)):
            return False, f"malformed {MANIFEST_NAME}: entry {name!r} must have int 'bytes' and str 'sha256', got {entry!r}"
    paths = [folder / name for name in entries]
    for path, (name, entry) in zip(paths, entries.items()):
        if not path.is_file():
            return False, f"missing file {name}"
        if path.stat().st_size != entry["bytes"]:
            return False, f"{name}: {path.stat().st_size} bytes, manifest says {entry['bytes']}"
    for (name, entry), digest in zip(entries.items(), _hash_all(paths)):
        if digest != entry["sha256"]:
            return False, f"{name}: sha256 {digest[:12]}... does not match the manifest's {entry['sha256'][:12]}..."
    return True, "ok"


def list_checkpoints(output_dir: str | Path) -> List[Tuple[int, Path]]:
    """(step, folder) of every `checkpoint-N` folder, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def latest_valid_checkpoint(output_dir: str | Path,
                            on_corrupt: Optional[Callable[[Path, str], None]] = None) -> Optional[Path]:
    """The newest checkpoint whose manifest verifies; corrupt newer ones are renamed `corrupt-checkpoint-N`."""
    for _, folder in reversed(list_checkpoints(output_dir)):
        ok, reason = verify_checkpoint(folder)
        if ok:
            return folder
        quarantined = folder.with_name(f"corrupt-{folder.name}")
        suffix = 1
        while quarantined.exists():
            quarantined = folder.with_name(f"corrupt-{folder.name}.{suffix}")
            suffix += 1
        folder.rename(quarantined)
        if on_corrupt is not None:
            on_corrupt(quarantined, reason)
    return None
