"""The risk officers' page in a real headless Chromium: it loads without console errors, shows
every capped asset's band of a seeded store with its colour and timeline chart, refreshes on its
own, and the test keeps a screenshot (CI's artefact)."""

from typing import Any

from ledger.http.page import BAND_COLOURS
from ledger.http.roles import Role
from tests.browser import chromium, screenshot_path
from tests.http.server import Server
from tests.support import at, command

# Asset -> (the transfers in, one after the other; the band they leave it in). U = 1,000 tokens
# and F large: band A admits up to 800 - T, B and C up to U - T.
SEEDED = {
    "AAA": (["300", "200"], "A"),
    "BBB": (["800", "50"], "B"),
    "CCC": (["800", "150"], "C"),
    "DDD": (["800", "100", "100"], "D"),
}
# One step per band change: the cap set (-> A), then each band the transfers crossed into.
BAND_CHANGES = {"AAA": 1, "BBB": 2, "CCC": 3, "DDD": 4}
REFRESH_WAIT_MS = 10_000


def _seed(server: Server) -> None:
    commands: list[dict[str, Any]] = [
        command("list_asset", "s-usdt", asset="USDT", collateral_rank=1)
    ]
    for asset, (quantities, _band) in SEEDED.items():
        commands += [
            command("list_asset", f"s-{asset}-1", asset=asset, collateral_rank=8),
            command(
                "set_collateral_cap",
                f"s-{asset}-2",
                asset=asset,
                upper_limit="1000",
                fixed_quota_usdt="1000000",
            ),
            command("mark_prices", f"s-{asset}-3", prices={asset: "1"}),
        ]
        commands += [
            command(
                "transfer_in",
                f"s-{asset}-t{step}",
                user=f"{asset.lower()}{step}",
                account="cross",
                asset=asset,
                quantity=quantity,
                effective_at=at(step + 1),
            )
            for step, quantity in enumerate(quantities)
        ]
    commands.append(command("list_asset", "s-btc", asset="BTC", collateral_rank=2))  # not capped
    with server.client(Role.ADMIN) as admin:
        answer = admin.post("/v1/commands:batch", json=commands)
    assert answer.status_code == 200, answer.text
    assert {o["status"] for o in answer.json()} == {"accepted"}, answer.text


def test_the_band_page_shows_each_capped_assets_band_without_console_errors(
    server: Server,
) -> None:
    _seed(server)
    backend = "postgres" if server.url.startswith("postgresql") else "sqlite"
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        response = page.goto(f"{server.base_url}/?refresh=1")
        assert response is not None and response.status == 200
        rows = page.locator("#assets tbody tr")
        assert rows.count() == len(SEEDED)  # capped assets only (not USDT, not BTC)
        for asset, (_quantities, band) in SEEDED.items():
            row = page.locator(f'#assets tr[data-asset="{asset}"]')
            assert row.get_attribute("data-band") == band
            badge = row.locator(".band")
            assert badge.inner_text() == band
            assert BAND_COLOURS[band] in (badge.get_attribute("style") or "")
            chart = page.locator(f'.chart[data-asset="{asset}"] line.segment')
            assert chart.count() == BAND_CHANGES[asset], asset
        assert page.locator('#assets tr[data-asset="CCC"] td').nth(3).inner_text() == "95%"
        # The script refreshes the panels on its own: the stamp becomes a time.
        page.wait_for_function(
            "document.getElementById('updated').textContent.includes('T')",
            timeout=REFRESH_WAIT_MS,
        )
        assert page.locator("#assets tbody tr").count() == len(SEEDED)
        shot = screenshot_path(f"band-page-{backend}")
        page.screenshot(path=str(shot), full_page=True)
    assert problems == []
    assert shot.stat().st_size > 0
    print(f"screenshot: {shot.resolve()}")
