#!/usr/bin/env python3
"""An operator running customers from relayhub's operator console in a real
Chromium (Playwright), with the license console's checks (browser.py's
Visit: no other host, no script or console error, no failed response, no
page wider than the screen, a screenshot of every page).

Run by the integration test `admin_console::an_operator_runs_customers_from_the_console_in_chromium_on_a_desktop_and_a_phone`,
which passes CONSOLE_CASE:

    base            http://127.0.0.1:PORT
    email/password  an operator
    license         a license the server has

Once at desktop size and once on a phone, each in a fresh context: sign in,
see the licenses, onboard a customer (its token works at once), rename it,
suspend it (its token is refused) and resume it, issue and revoke a token,
make an app key, invite a fleet user and switch them off, delete it with
its confirmation, add an operator, read the
audit log, every page of the navigation, sign out.
"""

import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import BASE, CASE, expect, run_all, visited  # noqa: E402


def license_status(token):
    """What the producer API answers the token now."""
    request = urllib.request.Request(f"{BASE}/api/v1/license", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def shown_secret(page, prefix):
    secret = page.locator("code.secret").first.inner_text().strip()
    assert secret.startswith(prefix), secret
    return secret


def steps(visit, viewport):
    page = visit.page
    number = f"CUST-{viewport.upper()}"
    page.goto(BASE + "/console/operator")
    expect(page).to_have_url(re.compile(re.escape(BASE) + r"/console/operator/login\?next="))
    visit.settle("sign-in")
    page.get_by_label("Email", exact=True).fill(CASE["email"])
    page.get_by_label("Password", exact=True).fill(CASE["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(BASE + "/console/operator")
    expect(page.locator("table")).to_contain_text(CASE["license"])
    visit.settle("licenses")

    # A new customer: its token is shown once and works at once.
    page.get_by_label("Number", exact=True).fill(number)
    page.get_by_label("Name", exact=True).fill("Gamma AG")
    page.get_by_role("button", name="Create the license", exact=True).click()
    token = shown_secret(page, "rhb_")
    assert license_status(token) == 200
    visit.settle("license-created")

    page.get_by_label("Name", exact=True).fill("Gamma AG (renamed)")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page).to_have_url(f"{BASE}/console/operator/licenses/{number}")
    expect(page.locator("dl.facts").first).to_contain_text("Gamma AG (renamed)")

    page.get_by_role("button", name="Suspend the license", exact=True).click()
    expect(page.locator("dl.facts").first).to_contain_text("suspended")
    assert license_status(token) == 403, "a suspended license's token is refused at once"
    visit.settle("license-suspended")
    page.get_by_role("button", name="Resume the license", exact=True).click()
    expect(page.get_by_role("button", name="Suspend the license", exact=True)).to_be_visible()
    assert license_status(token) == 200

    page.get_by_role("button", name="Issue a token", exact=True).click()
    second = shown_secret(page, "rhb_")
    assert license_status(second) == 200
    first_row = page.locator("tr", has=page.locator("td", has_text="tok_")).first
    first_row.get_by_role("button", name="Revoke", exact=True).click()
    expect(page.locator("table").first).to_contain_text("revoked")

    page.get_by_label("Key name", exact=True).fill("android")
    page.get_by_role("button", name="Create an app key", exact=True).click()
    shown_secret(page, "rhk_")
    visit.settle("license-page")

    # The fleet's section of the license: a user invited with a
    # one-time password link, then switched off.
    page.get_by_role("link", name="Fleet users", exact=True).click()
    expect(page).to_have_url(f"{BASE}/console/operator/licenses/{number}/users")
    page.get_by_label("Email", exact=True).fill(f"owner-{viewport}@example.com")
    page.get_by_label("Role", exact=True).select_option("admin")
    page.get_by_role("button", name="Invite", exact=True).click()
    link = page.locator("code.secret").first.inner_text().strip()
    assert link.startswith("/console/password-reset?token=rhw_"), link
    page.get_by_role("button", name="Switch off", exact=True).click()
    expect(page.locator("table")).to_contain_text("switched off")
    visit.settle("license-users")
    page.get_by_role("link", name=f"Back to license {number}").click()

    page.get_by_label(f"Type {number} to confirm").fill(number)
    page.get_by_role("button", name="Delete the license", exact=True).click()
    expect(page).to_have_url(f"{BASE}/console/operator?deleted={number}")
    expect(page.get_by_role("status")).to_contain_text(number)
    assert license_status(second) == 401, "a deleted license's tokens are gone"

    visit.go("/console/operator/operators", "operators")
    page.get_by_label("Email", exact=True).fill(f"second-{viewport}@example.com")
    page.get_by_label("Name", exact=True).fill("Second")
    page.get_by_label(re.compile("^Password")).fill("another long passphrase")
    page.get_by_role("button", name="Add the operator", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(f"second-{viewport}@example.com")

    visit.go(f"/console/operator/audit?license={number}", "audit")
    log = page.locator("table")
    expect(log).to_contain_text("license.delete")
    expect(log).to_contain_text("license.create")
    expect(log).to_contain_text(CASE["email"])

    hrefs = page.locator("header nav a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    for href in hrefs:
        visit.go(href, "nav" + href.replace("/console/operator", "").replace("/", "-"))

    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(BASE) + r"/console/operator/login"))
    visit.settle("signed-out")
    page.goto(BASE + "/console/operator/audit")
    expect(page).to_have_url(re.compile(re.escape(BASE) + r"/console/operator/login\?next="))


def run(browser, viewport):
    return visited(browser, viewport, f"operator-{viewport}", lambda visit: steps(visit, viewport))


if __name__ == "__main__":
    run_all(run, ("desktop", "phone"))
