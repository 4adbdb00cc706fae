"""Regenerate the README's console screenshot (docs/img/console.png) against seeded demo data.

    .venv/bin/python scripts/console_screenshot.py                 # writes docs/img/console.png
    .venv/bin/python scripts/console_screenshot.py --view quality --out /tmp/quality.png
    .venv/bin/python scripts/console_screenshot.py --serve         # keep serving; prints a signed-in link

Seeds a throw-away chdb warehouse with the console tests' demo traffic (tests/console/seed.py), serves the
worker's console app on a free local port and drives the system Chromium (headless) through Playwright.
No broker and no pipelines: only the console part of the worker runs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import chdb  # noqa: E402, F401  -- load the engine in the main thread first
from aiohttp import web  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from consumers.console import TOKENS_FILE, TokenStore, create_token  # noqa: E402
from consumers.warehouse import Warehouse, apply_migrations  # noqa: E402
from consumers.worker import ConsoleDeps, create_console_app  # noqa: E402
from gatewatch.procs import free_port  # noqa: E402
from tests.console import seed  # noqa: E402


async def shoot(url: str, out: Path, width: int, height: int, full_page: bool = False) -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium not found (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True)
        page = await browser.new_page(viewport={"width": width, "height": height}, color_scheme="dark")
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(url)
        await page.wait_for_selector("body[data-state=ready]")
        await page.wait_for_timeout(300)  # let the charts settle after the last resize
        out.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out), full_page=full_page)
        await browser.close()
    if errors:
        raise SystemExit(f"the page logged errors: {errors}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="gatewatch-console-") as tmp:
        home = Path(tmp)
        with Warehouse(f"chdb://{home / 'warehouse'}") as wh:
            apply_migrations(wh.client)
            seed.insert(wh.client, seed.build(datetime.now(UTC), n_events=args.events))
            token, _ = create_token(home / TOKENS_FILE, ["*"])
            app = create_console_app(ConsoleDeps(CollectorRegistry(), wh, tokens=TokenStore(home / TOKENS_FILE)))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            url = f"http://127.0.0.1:{port}/#{args.view}?token={token}"
            try:
                if args.serve:
                    print(f"console with demo data: {url}  (Ctrl-C stops)", flush=True)
                    await asyncio.Event().wait()
                await shoot(url, args.out, args.width, args.height, args.full_page)
                print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
            finally:
                await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "console.png")
    parser.add_argument("--view", default="traffic")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not only the viewport")
    parser.add_argument("--serve", action="store_true", help="serve the seeded console until Ctrl-C")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
