"""`serlib`, the console command: `serlib study --profile NAME`, `serlib bench`, `serlib fetch CORPUS...`.

Each subcommand is its module's own command line (`python -m serlib.study`, `python -m serlib.bench`,
`python -m serlib.data.fetch`), so both spellings take the same options; `serlib SUBCOMMAND --help`
lists them.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "study": ("serlib.study.runner", "run a profile's notebooks headless into reports/ (make study)"),
    "bench": ("serlib.bench.__main__", "time the encoder and every method's training step here (make bench)"),
    "fetch": ("serlib.data.fetch", "download, verify and unpack the freely licensed corpora into the data root"),
    "gpu-check": ("serlib.study.gpu_check", "run params/gpu_check.yaml and print utt/s, peak GPU memory, UA (make gpu-check)"),
}


def usage() -> str:
    lines = ["usage: serlib {" + ",".join(COMMANDS) + "} [options]", "", __doc__.splitlines()[0], "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"serlib: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return int(importlib.import_module(COMMANDS[name][0]).main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
