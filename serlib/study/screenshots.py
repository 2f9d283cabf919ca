"""`python -m serlib.study.screenshots`: PNG screenshots of the rendered reports in headless Chromium.

To look at what a student sees (summary, folded code, figures, the results browser) without a
desktop: one picture per page of the reports folder, written to <reports>/screenshots/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from ..evaluation.results import reports_path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(browser: str, page: Path, png: Path, width: int = 1280, height: int = 2400) -> None:
    """One headless screenshot of `page` (scripts run, figures drawn, no network needed)."""
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", "--virtual-time-budget=8000", f"--screenshot={png}",
                    page.resolve().as_uri()], check=True, capture_output=True, timeout=180)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serlib.study.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--reports", default=None, help="reports folder (default: reports/)")
    parser.add_argument("--height", type=int, default=2400, help="pixels of each page to capture")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("no headless Chromium found: install it (Debian/Ubuntu: apt-get install chromium)", file=sys.stderr)
        return 2
    root = reports_path(args.reports)
    pages = sorted(root.glob("*.html"))
    if not pages:
        print(f"no reports in {root}: run `make study` first", file=sys.stderr)
        return 2
    out = root / "screenshots"
    out.mkdir(exist_ok=True)
    for page in pages:
        png = out / f"{page.stem}.png"
        screenshot(browser, page, png, height=args.height)
        print(png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
