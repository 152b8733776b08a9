#!/usr/bin/env python
"""Compile every gettext catalogue under src/siyu/locale (.po -> .mo) with polib.

Why this script: set-up then needs no GNU gettext (``msgfmt``) on the machine. The .mo files
are build artefacts (gitignored) produced at set-up; untranslated and fuzzy entries are left
out, as ``msgfmt`` does, so they fall back to the English source text.

Usage: ``python scripts/compile_messages.py [--stale-only] [LOCALE_DIR_OR_PO_FILE ...]``
(default: every catalogue under src/siyu/locale).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import polib

LOCALE_DIR = Path(__file__).resolve().parent.parent / "src" / "siyu" / "locale"


def is_stale(po_path: Path) -> bool:
    mo_path = po_path.with_suffix(".mo")
    return not mo_path.exists() or mo_path.stat().st_mtime < po_path.stat().st_mtime


def compile_catalogue(po_path: Path) -> Path:
    """Write the .mo beside ``po_path`` and return its path."""
    mo_path = po_path.with_suffix(".mo")
    # Write beside, then rename: parallel test workers may compile at the same time.
    partial = mo_path.with_name(f"{mo_path.name}.{os.getpid()}.tmp")
    polib.pofile(str(po_path)).save_as_mofile(str(partial))
    os.replace(partial, mo_path)
    return mo_path


def compile_catalogues(locale_dir: Path = LOCALE_DIR, *, stale_only: bool = False) -> list[Path]:
    """Compile each .po below ``locale_dir`` (only the out-of-date ones with ``stale_only``)."""
    return [
        compile_catalogue(po_path)
        for po_path in sorted(locale_dir.rglob("*.po"))
        if not stale_only or is_stale(po_path)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[LOCALE_DIR])
    parser.add_argument("--stale-only", action="store_true", help="skip up-to-date .mo files")
    options = parser.parse_args(argv)
    for path in options.paths:
        if path.is_file() and path.suffix == ".po":
            written = [] if options.stale_only and not is_stale(path) else [compile_catalogue(path)]
        elif path.is_dir():
            written = compile_catalogues(path, stale_only=options.stale_only)
        else:
            print(f"not a .po file or a locale directory: {path}", file=sys.stderr)
            return 1
        for mo_path in written:
            print(f"compiled {mo_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
