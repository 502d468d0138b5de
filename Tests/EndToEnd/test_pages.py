"""The pages, in a real browser: Debian's chromium, driven by selenium through chromium-driver,
against a real `serve` with nothing else running. A person finds a repository, reads how to pull
it, signs in to the audit page, checks an initiation's proof and watches a push arrive live.

Each page's screenshot is kept as a test artefact (UPLOAD_COORDINATOR_ARTEFACTS, by default
.build/test-artefacts/pages/); the README shows them.
"""
import hashlib
import json
import os
import pathlib
import re
import struct
import subprocess
import time
import zlib

import boto3
import pytest
import requests
from botocore.config import Config
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from conftest import CREDENTIALS, ROOT, Server, serving, signed_headers
from test_catalog_and_tags import push_image
from test_registry_clients import login_password, write_oci_layout

ARTEFACTS = pathlib.Path(os.environ.get("UPLOAD_COORDINATOR_ARTEFACTS", ROOT / ".build" / "test-artefacts")) / "pages"
REGISTRY_ID = "000000000000"


def png(width=8, height=8, rgb=(11, 99, 206)):
    """A small, valid PNG of one colour: the logo."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name):
    """The whole page, as tall as it is (up to 3,000 pixels)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    driver.set_window_size(width, min(3000, driver.execute_script("return document.documentElement.scrollHeight") + 140))
    driver.save_screenshot(str(ARTEFACTS / f"{name}.png"))
    driver.set_window_size(width, height)


def client(server):
    return boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def skopeo_push(server, tmp_path, repository, tag, layer):
    """Pushes a one-layer image with skopeo, logged in the ECR way: a registry client's push."""
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    host = f"127.0.0.1:{server.port}"
    login = subprocess.run(["skopeo", "login", "--tls-verify=false", "-u", "AWS", "--password-stdin", host],
                           input=login_password(server), capture_output=True, text=True, timeout=120, env=env)
    assert login.returncode == 0, login.stderr
    source = tmp_path / f"layout-{tag}"
    digest, _ = write_oci_layout(source, tag, layer)
    copy = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{source}:{tag}", f"docker://{host}/{repository}:{tag}"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert copy.returncode == 0, copy.stderr
    return digest


def sign_in(driver, key="test", secret="test"):
    driver.find_element(By.ID, "access-key-id").send_keys(key)
    driver.find_element(By.ID, "secret-access-key").send_keys(secret)
    driver.find_element(By.ID, "sign-in").click()


def rows(driver, table):
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")]


ABOUT = "# Web app\nA **small** web server, with `code` and a [home page](https://example.com/web-app).\n\n- fast\n- tiny"


def test_a_person_finds_a_repository_pulls_it_and_sees_its_audit_trail_verified_and_live(browser, tmp_path):
    with serving() as server:
        ecr = client(server)
        ecr.put_registry_catalog_data(displayName="Acme Public Registry")
        ecr.create_repository(repositoryName="acme/web-app", catalogData={
            "description": "The Acme web app", "architectures": ["x86-64", "ARM 64"], "operatingSystems": ["Linux"],
            "logoImageBlob": png(), "aboutText": ABOUT, "usageText": "Run it:\n```\ndocker run acme/web-app\n```"})
        ecr.create_repository(repositoryName="other/tool")
        skopeo_push(server, tmp_path, "acme/web-app", "v1", os.urandom(4096))
        # An initiation from each API client, for the audit page's sources.
        aws = subprocess.run(["aws", "ecr-public", "initiate-layer-upload", "--endpoint-url", server.endpoint, "--repository-name", "acme/web-app"],
                             capture_output=True, text=True, timeout=120, env={**os.environ, **CREDENTIALS})
        assert aws.returncode == 0, aws.stderr
        boto3_upload = ecr.initiate_layer_upload(repositoryName="acme/web-app")["uploadId"]
        base = f"http://127.0.0.1:{server.port}"

        # The gallery, from the server's root, as a browser asks for it.
        browser.get(base + "/")
        assert browser.current_url == base + "/gallery/"
        assert browser.find_element(By.CSS_SELECTOR, "h1").text == "Acme Public Registry"
        names = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "a.repository-link")]
        assert names == ["acme/web-app", "other/tool"]
        card = browser.find_element(By.CSS_SELECTOR, "#repositories li")
        assert "The Acme web app" in card.text and "x86-64, ARM 64" in card.text and "Linux" in card.text and "v1" in card.text
        logo = card.find_element(By.CSS_SELECTOR, "img.logo")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", logo) == 8
        screenshot(browser, "gallery")

        # Found by search.
        search = browser.find_element(By.ID, "q")
        search.send_keys("WEB")
        search.submit()
        WebDriverWait(browser, 10).until(expected_conditions.url_contains("q=WEB"))
        assert [link.text for link in browser.find_elements(By.CSS_SELECTOR, "a.repository-link")] == ["acme/web-app"]
        browser.find_element(By.LINK_TEXT, "acme/web-app").click()

        # Its page: the pull command for this server, its tags, its text, its uploads.
        WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "repository-name")))
        assert browser.find_element(By.ID, "pull-command").text == f"docker pull 127.0.0.1:{server.port}/acme/web-app:v1"
        tags = rows(browser, "tags")
        assert [row[0] for row in tags] == ["v1"]
        image = ecr.describe_images(repositoryName="acme/web-app")["imageDetails"][0]
        assert tags[0][1] == image["imageDigest"]
        assert [row[:2] for row in rows(browser, "images")] == [[image["imageDigest"], "v1"]], "each image with its tags"
        about = browser.find_element(By.ID, "about")
        assert about.find_element(By.TAG_NAME, "strong").text == "small"
        assert about.find_element(By.LINK_TEXT, "home page").get_attribute("href") == "https://example.com/web-app"
        assert [item.text for item in about.find_elements(By.CSS_SELECTOR, "ul li")] == ["fast", "tiny"]
        assert browser.find_element(By.CSS_SELECTOR, "#usage pre").text == "docker run acme/web-app"
        # Its uploads (in progress, or of layers no image names yet) are for this registry's keys.
        assert not browser.find_elements(By.ID, "uploads") and boto3_upload not in browser.page_source
        assert "Uploads are shown to this registry's keys, signed in." in browser.page_source

        # The audit page needs a key: the sign-in page first, then back to the page asked for.
        browser.get(base + "/gallery/audit")
        assert "/gallery/sign-in" in browser.current_url
        sign_in(browser, "test", "wrong")
        error = WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "sign-in-error")))
        assert "do not match" in error.text
        sign_in(browser)
        WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "initiations")))
        initiations = rows(browser, "initiations")
        assert len(initiations) == 4
        sources = [row[4] for row in initiations]
        assert sources[:2] == ["boto3", "awscli"] and all(source.startswith("registry client (") for source in sources[2:]), sources
        assert {row[3] for row in initiations} == {"test"} and {row[2] for row in initiations} == {"acme/web-app"}
        size = int(browser.find_element(By.ID, "log-size").text)
        root = server.tool("upload-coordinator", "audit", "root", "--data-dir", server.data_dir)
        assert root.returncode == 0, root.stderr
        assert json.loads(root.stdout) == {"treeSize": size, "rootHash": browser.find_element(By.ID, "log-root").text}
        screenshot(browser, "audit")

        # Signed in, the repository's page shows its uploads: skopeo uploaded two blobs (the layer
        # and the config), then awscli and boto3 one each.
        browser.get(base + "/gallery/repositories/acme/web-app")
        uploads = rows(browser, "uploads")
        assert len(uploads) == 4 and [row[2] for row in uploads] == ["active", "active", "completed", "completed"]
        assert uploads[0][1] == boto3_upload  # newest first
        screenshot(browser, "repository")

        # Filtered by source.
        browser.get(base + "/gallery/audit?source=awscli&hours=24")
        assert [row[4] for row in rows(browser, "initiations")] == ["awscli"]

        # The registry client's initiation, proven on the server.
        browser.get(base + "/gallery/audit?source=registry")
        registry_row = rows(browser, "initiations")[0]
        assert len(rows(browser, "initiations")) == 2
        browser.find_element(By.CSS_SELECTOR, "a.proof-link").click()
        WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "verdict")))
        assert browser.find_element(By.ID, "verdict").text.startswith(f"Verified: event {registry_row[0]} is in the log")
        checks = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#checks li")]
        assert len(checks) == 4 and all(check.startswith("Passed") for check in checks), checks
        assert "the tree's leaf" in checks[0] and "UploadInitiated" in checks[1], checks
        assert "signature checked" in checks[3] and "includes this event" in checks[3], checks[3]
        assert int(browser.find_element(By.ID, "tree-size").text) >= size
        screenshot(browser, "proof")

        # Live: a new push appears without reloading.
        browser.get(base + "/gallery/audit")
        WebDriverWait(browser, 10).until(lambda driver: driver.find_element(By.ID, "live-status").text == "live")
        before = len(rows(browser, "initiations"))
        browser.execute_script("document.body.setAttribute('data-not-reloaded', 'yes')")
        skopeo_push(server, tmp_path, "acme/web-app", "v2", os.urandom(2048))
        WebDriverWait(browser, 20).until(lambda driver: len(rows(driver, "initiations")) > before)
        newest = rows(browser, "initiations")[0]
        assert newest[2] == "acme/web-app" and newest[4].startswith("registry client (")
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-not-reloaded") == "yes"
        WebDriverWait(browser, 10).until(lambda driver: int(driver.find_element(By.ID, "log-size").text) > size)
        screenshot(browser, "audit-live")


HOSTILE = {
    # U+0600 joins the `<` after it into one Character, which Character-wise escaping misses.
    "description": "<script>window.pwned = 'description'</script> \u0600<b id=\"joined\">x</b>",
    "aboutText": "<img src=x onerror=\"window.pwned='about'\"> [click me](javascript:window.pwned='link') "
                 "[data](data:text/html,<script>alert(1)</script>) <iframe src=\"https://example.com\"></iframe>",
    "usageText": "**<b onmouseover=\"window.pwned='usage'\">bold</b>** `<script>window.pwned='code'</script>` "
                 "[x](https://example.com/\"onmouseover=\"window.pwned='quote')",
}


def test_hostile_catalog_text_neither_runs_nor_renders_as_markup(browser):
    with serving() as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="hostile/repo", catalogData=HOSTILE)
        base = f"http://127.0.0.1:{server.port}"
        for path in ("/gallery/", "/gallery/?q=hostile", "/gallery/repositories/hostile/repo"):
            browser.get(base + path)
            main = browser.find_element(By.TAG_NAME, "main")
            # Nothing ran, and no element came from the text: no script, image, frame or handler.
            assert browser.execute_script("return window.pwned") is None
            assert main.find_elements(By.CSS_SELECTOR, "script, img, iframe, b, [onerror], [onmouseover]") == []
            assert all(link.get_attribute("href").startswith(("http://127.0.0.1", "https://example.com"))
                       for link in main.find_elements(By.TAG_NAME, "a"))
            # The text shows as text.
            assert "<script>window.pwned = 'description'</script>" in main.text and "<b id=\"joined\">" in main.text
        # A search's own text, reflected into the page and its search box, stays text too.
        browser.get(base + "/gallery/?q=" + requests.utils.quote("\u0600<b id=reflected>x</b>\"\u0301 autofocus onfocus=\"window.pwned='q'"))
        assert browser.find_elements(By.ID, "reflected") == [] and browser.execute_script("return window.pwned") is None
        assert browser.find_element(By.ID, "q").get_attribute("value").endswith("autofocus onfocus=\"window.pwned='q'")
        browser.get(base + "/gallery/repositories/hostile/repo")
        about = browser.find_element(By.ID, "about").text
        assert "<img src=x onerror=" in about and "<iframe" in about and "click me" in about
        assert browser.find_element(By.ID, "about").find_elements(By.TAG_NAME, "a") == []
        usage = browser.find_element(By.ID, "usage")
        assert "<b onmouseover=" in usage.text and usage.find_element(By.TAG_NAME, "code").text == "<script>window.pwned='code'</script>"
        screenshot(browser, "hostile")


def test_under_private_pulls_a_key_of_another_registry_sees_no_repository_it_is_not_allowed():
    """Anonymous viewers see no page of a private registry: a stranger's key signed in is judged as
    itself only, never as an anonymous viewer would be."""
    with serving("--private-pulls", credentials="test test\nAKIDFOREIGN foreign 111122223333 someone\n") as server:
        client(server).create_repository(repositoryName="private/app", catalogData={"description": "secret plans"})
        client(server).put_registry_catalog_data(displayName="SecretDisplayName")
        base = f"http://127.0.0.1:{server.port}"
        stranger = requests.Session()
        signed = stranger.post(base + "/gallery/sign-in", data={"accessKeyId": "AKIDFOREIGN", "secretAccessKey": "foreign"},
                               headers={"Origin": base}, allow_redirects=False)
        assert signed.status_code == 303
        gallery = stranger.get(base + "/gallery/").text
        assert "private/app" not in gallery
        page = stranger.get(base + "/gallery/repositories/private/app")
        assert page.status_code == 404 and "secret plans" not in page.text
        # Nor the registry's display name (catalog data, as GetRegistryCatalogData refuses it them).
        for shown in (gallery, page.text, stranger.get(base + "/gallery/audit").text):
            assert "SecretDisplayName" not in shown
        own = requests.Session()
        assert own.post(base + "/gallery/sign-in", data={"accessKeyId": "test", "secretAccessKey": "test"},
                        headers={"Origin": base}, allow_redirects=False).status_code == 303
        assert "SecretDisplayName" in own.get(base + "/gallery/").text


def test_access_cookies_headers_and_private_pulls(tmp_path):
    with serving("--private-pulls") as server:
        ecr = client(server)
        created = ecr.create_repository(repositoryName="private/app", catalogData={"description": "secret plans", "logoImageBlob": png()})
        logo = created["catalogData"]["logoUrl"]
        base = f"http://127.0.0.1:{server.port}"
        session = requests.Session()
        # The logo too: not without a session or a signature, as the gallery's pages.
        assert session.get(logo).status_code in (401, 403), "a private registry's logo is not open"

        # With --private-pulls, the gallery needs a sign-in too; nothing of it shows before.
        for path in ("/gallery/", "/gallery/repositories/private/app"):
            answer = session.get(base + path, allow_redirects=False)
            assert answer.status_code == 303 and answer.headers["Location"].startswith("/gallery/sign-in?next="), path
        # An API client's GET / is not redirected to pages.
        assert session.get(base + "/", allow_redirects=False).status_code == 404
        # Nor the registry's catalog data: its display name is for those signed in.
        ecr.put_registry_catalog_data(displayName="Acme Hidden Registry")
        assert "Acme Hidden Registry" not in session.get(base + "/gallery/sign-in").text
        # A message page too (a sign-out from another site's form, refused).
        refused = session.post(base + "/gallery/sign-out", headers={"Origin": "http://evil.example"}, allow_redirects=False)
        assert refused.status_code == 403 and "Registry 000000000000" in refused.text and "Acme Hidden Registry" not in refused.text, refused.text

        # A sign-in from another site's form is refused; a wrong secret is 403 (a 401 would need a
        # WWW-Authenticate challenge, which a form has none of) and sets nothing.
        form = {"accessKeyId": "test", "secretAccessKey": "test", "next": "/gallery/audit"}
        assert session.post(base + "/gallery/sign-in", data=form, headers={"Origin": "http://evil.example"}, allow_redirects=False).status_code == 403
        wrong = session.post(base + "/gallery/sign-in", data={**form, "secretAccessKey": "nope"}, allow_redirects=False)
        assert wrong.status_code == 403 and "Set-Cookie" not in wrong.headers
        # A guess shows in the log, with the key it tried and where it came from.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("a sign-in to the pages was refused" in line for line in server.stderr_lines):
            time.sleep(0.1)
        refused = [line for line in server.stderr_lines if "a sign-in to the pages was refused" in line]
        assert refused and "access_key_id=test" in refused[0] and "127.0.0.1" in refused[0], server.stderr_text()[-2000:]
        # `next` may only be a gallery path.
        elsewhere = session.post(base + "/gallery/sign-in", data={**form, "next": "//evil.example/x"}, allow_redirects=False)
        assert elsewhere.status_code == 303 and elsewhere.headers["Location"] == "/gallery/audit"
        signed = session.post(base + "/gallery/sign-in", data=form, allow_redirects=False)
        assert signed.status_code == 303 and signed.headers["Location"] == "/gallery/audit"
        cookie = signed.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie and "Path=/" in cookie

        page = session.get(base + "/gallery/repositories/private/app")
        assert page.status_code == 200 and "secret plans" in page.text
        shown = session.get(logo)
        assert shown.status_code == 200 and shown.content == png(), shown.status_code
        assert shown.headers["Cache-Control"].startswith("private,"), "no shared cache keeps it for others"
        for path in ("/gallery/", "/gallery/audit", "/gallery/repositories/private/app", "/gallery/sign-in"):
            answer = session.get(base + path)
            assert answer.status_code == 200, path
            policy = answer.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
            assert answer.headers["X-Content-Type-Options"] == "nosniff"

        # A tampered or foreign cookie is no session.
        (name, value), = [(cookie.name, cookie.value) for cookie in session.cookies if cookie.name.startswith("uc_session_")]
        fields = value.split(".")
        for forged in (".".join(fields[:2] + [str(int(fields[2]) + 1)] + fields[3:]),
                       ".".join([fields[0], "4f54484552", *fields[2:]]), "v1.74657374.99999999999999.00"):
            answer = requests.get(base + "/gallery/audit", cookies={name: forged}, allow_redirects=False)
            assert answer.status_code == 303 and "/gallery/sign-in" in answer.headers["Location"], forged

        # The live stream needs the session too, and speaks Server-Sent Events.
        assert requests.get(base + "/gallery/audit/stream?after=0", allow_redirects=False).status_code == 303
        with session.get(base + "/gallery/audit/stream?after=0", stream=True, timeout=10) as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            lines = []
            for line in stream.iter_lines(decode_unicode=True):
                lines.append(line)
                if line.startswith("event: log"):
                    break
            assert "event: log" in lines
            metrics = requests.get(base + "/metrics").text
            assert "upload_pages_audit_streams_open 1" in metrics, [line for line in metrics.splitlines() if "streams" in line]

        # Signing out clears the cookie, and ends the session on the server: a copy of the cookie
        # (a proxy's log, another tab's) no longer signs in, and an open live stream ends.
        copy = {name: value}
        with session.get(base + "/gallery/audit/stream?after=0", stream=True, timeout=10) as stream:
            lines = stream.iter_lines(decode_unicode=True)
            assert next(lines).startswith("retry:")
            out = session.post(base + "/gallery/sign-out", allow_redirects=False)
            assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
            started = time.monotonic()
            for _ in lines:  # to its end: the server closes it
                assert time.monotonic() - started < 8
        assert session.get(base + "/gallery/audit", allow_redirects=False).status_code == 303
        assert requests.get(base + "/gallery/audit", cookies=copy, allow_redirects=False).status_code == 303
        assert session.post(base + "/gallery/sign-in", data=form, headers={"Origin": base}, allow_redirects=False).status_code == 303
        assert session.get(base + "/gallery/audit", allow_redirects=False).status_code == 200, "a new sign-in holds"
        # The old cookie signing out again is only cleared: it no longer ends the sessions made since.
        out = requests.post(base + "/gallery/sign-out", cookies=copy, allow_redirects=False)
        assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
        assert session.get(base + "/gallery/audit", allow_redirects=False).status_code == 200, "the new sign-in still holds"
        # Sent first beside the current session's cookie (a copy planted with a longer Path), it
        # does not spare that session; then a new sign-in for what follows.
        both = f"{name}={value}; {name}={session.cookies.get(name)}"
        assert requests.post(base + "/gallery/sign-out", headers={"Cookie": both}, allow_redirects=False).status_code == 303
        assert session.get(base + "/gallery/audit", allow_redirects=False).status_code == 303, "the current session ended"
        assert session.post(base + "/gallery/sign-in", data=form, headers={"Origin": base}, allow_redirects=False).status_code == 303
        # A restart (as another node of the data folder) keeps the sign-out.
        assert server.stop() == 0
        again = Server(server.data_dir, "--private-pulls", database_url=server.database_url)
        try:
            base = f"http://127.0.0.1:{again.port}"
            assert requests.get(base + "/gallery/audit", cookies=copy, allow_redirects=False).status_code == 303
            assert requests.get(base + "/gallery/audit", cookies=session.cookies, allow_redirects=False).status_code == 200
        finally:
            assert again.stop() == 0


def test_a_key_of_another_registry_may_not_read_the_audit_trail_and_denied_repositories_and_tags_are_not_shown(tmp_path):
    with serving(credentials="test test\nAKIDFOREIGN foreign 111122223333 someone\n") as server:
        ecr = client(server)
        for name in ("open/app", "closed/app", "closed/for-test", "quiet/app"):
            ecr.create_repository(repositoryName=name)
        ecr.set_repository_policy(repositoryName="closed/app", policyText=_deny("*", "BatchGetImage"))
        ecr.set_repository_policy(repositoryName="closed/for-test", policyText=_deny("arn:aws:iam::000000000000:user/test", "BatchGetImage"))
        push_image(ecr, "quiet/app", [b"quiet layer"], tag="hidden-tag")
        ecr.set_repository_policy(repositoryName="quiet/app", policyText=_deny("*", "DescribeImageTags"))
        base = f"http://127.0.0.1:{server.port}"
        signed_in = requests.Session()
        assert signed_in.post(base + "/gallery/sign-in", data={"accessKeyId": "test", "secretAccessKey": "test"}, allow_redirects=False).status_code == 303

        # Anonymous viewers: the repository denied to everyone is neither listed, found nor shown.
        listed = requests.get(base + "/gallery/").text
        assert "open/app" in listed and "closed/for-test" in listed and "closed/app" not in listed
        assert 'id="no-repositories"' in requests.get(base + "/gallery/", params={"q": "closed/app"}).text
        assert requests.get(base + "/gallery/repositories/closed/app").status_code == 404
        # A key named in a Deny does not see what anonymous viewers see.
        mine = signed_in.get(base + "/gallery/").text
        assert "open/app" in mine and "closed/for-test" not in mine
        assert signed_in.get(base + "/gallery/repositories/closed/for-test").status_code == 404
        assert requests.get(base + "/gallery/repositories/closed/for-test").status_code == 200
        # DescribeImageTags denied: the repository shows, its tags do not.
        quiet = requests.get(base + "/gallery/repositories/quiet/app")
        assert quiet.status_code == 200 and "hidden-tag" not in quiet.text and "does not let you list its tags" in quiet.text
        assert "hidden-tag" not in listed and "hidden-tag" not in signed_in.get(base + "/gallery/repositories/quiet/app").text

        # A key of another registry may sign in, but the audit trail is this registry's keys'.
        other = requests.Session()
        signed = other.post(base + "/gallery/sign-in", data={"accessKeyId": "AKIDFOREIGN", "secretAccessKey": "foreign"}, allow_redirects=False)
        assert signed.status_code == 303
        assert other.get(base + "/gallery/audit").status_code == 403
        # Signed in, a stranger sees what it would see signed out: no less, and no policy blamed.
        opened = other.get(base + "/gallery/repositories/open/app").text
        assert "does not let you" not in opened and "does not let you" not in requests.get(base + "/gallery/repositories/open/app").text


def test_a_page_shows_no_images_uploads_or_catalog_data_the_policy_denies():
    """What DescribeImages and GetRepositoryCatalogData deny to every signed caller, a page does not show
    anyone either: images, recent uploads, the texts and the logo."""
    logo = b"\x89PNG\r\n\x1a\n" + os.urandom(500)
    with serving() as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="veiled/app", catalogData={
            "description": "a secret description", "aboutText": "secret about", "logoImageBlob": logo})
        push_image(ecr, "veiled/app", [b"veiled layer"], tag="v1")
        upload = ecr.initiate_layer_upload(repositoryName="veiled/app")["uploadId"]
        base = f"http://127.0.0.1:{server.port}"
        logo_path = f"/logos/000000000000/sha256:{hashlib.sha256(logo).hexdigest()}/veiled/app"
        signed = requests.Session()
        assert signed.post(base + "/gallery/sign-in", data={"accessKeyId": "test", "secretAccessKey": "test"}, allow_redirects=False).status_code == 303
        shown = signed.get(base + "/gallery/repositories/veiled/app").text
        assert "a secret description" in shown and upload in shown and "sha256:" in shown, "control: all shown before the policy"
        anonymous = requests.get(base + "/gallery/repositories/veiled/app").text
        assert "a secret description" in anonymous and upload not in anonymous, "uploads are for the registry's keys"
        served = requests.get(base + logo_path)
        # Cached for an hour, not for ever: who may see it can change.
        assert served.status_code == 200 and served.headers["Cache-Control"] == "public, max-age=3600"
        ecr.set_repository_policy(repositoryName="veiled/app", policyText=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "Deny", "Effect": "Deny", "Principal": "*",
            "Action": ["ecr-public:DescribeImages", "ecr-public:GetRepositoryCatalogData"]}]}))
        for viewer in (requests, signed):
            for page in [viewer.get(base + "/gallery/repositories/veiled/app"), viewer.get(base + "/gallery/")]:
                assert page.status_code == 200 and "veiled/app" in page.text
                assert "secret" not in page.text and upload not in page.text and logo_path not in page.text, page.text
        veiled = signed.get(base + "/gallery/repositories/veiled/app").text
        assert "does not let you see its images" in veiled and "does not let you see its uploads" in veiled
        assert "v1" in veiled, "its tags are still DescribeImageTags'"
        assert requests.get(base + logo_path).status_code == 404


def test_a_quiet_repository_of_a_busy_registry_is_not_said_to_have_no_uploads():
    """A repository's recent uploads are read from the registry's newest 5,000 initiations: one
    whose uploads are older said "No uploads in the last 7 days", with all of them in progress."""
    from concurrent.futures import ThreadPoolExecutor
    with serving() as server:
        ecr = client(server)
        for name in ("quiet/app", "busy/app"):
            ecr.create_repository(repositoryName=name)
        quiet = ecr.initiate_layer_upload(repositoryName="quiet/app")["uploadId"]
        base = f"http://127.0.0.1:{server.port}"
        signed = requests.Session()
        assert signed.post(base + "/gallery/sign-in", data={"accessKeyId": "test", "secretAccessKey": "test"}, allow_redirects=False).status_code == 303
        assert quiet in signed.get(base + "/gallery/repositories/quiet/app").text, "control: shown while among the newest"
        with ThreadPoolExecutor(8) as pool:
            clients = [client(server) for _ in range(8)]
            list(pool.map(lambda n: clients[n % 8].initiate_layer_upload(repositoryName="busy/app"), range(5000)))
        page = signed.get(base + "/gallery/repositories/quiet/app").text
        assert "No uploads in the last" not in page, page
        assert "None of the registry&#39;s newest 5000 initiations" in page.replace("&#x27;", "&#39;"), page


def test_a_logo_is_shown_under_private_pulls_to_a_request_botocore_signed():
    """botocore signs a path as every AWS service but S3 has it signed, encoded again: the `:` of
    a logo's digest is signed as `%3A`. A path signed as it was sent was refused every time."""
    logo = b"\x89PNG\r\n\x1a\n" + os.urandom(300)
    with serving("--private-pulls") as server:
        client(server).create_repository(repositoryName="private/app", catalogData={"logoImageBlob": logo})
        url = f"{server.endpoint}/logos/000000000000/sha256:{hashlib.sha256(logo).hexdigest()}/private/app"
        assert requests.get(url).status_code in (401, 403, 404), "control: not shown to an anonymous request"
        signed = requests.get(url, headers=signed_headers("GET", url))
        assert signed.status_code == 200 and signed.content == logo, (signed.status_code, signed.text[:300])


def test_a_full_page_links_to_no_empty_page_and_a_search_stopped_by_its_bound_goes_on_without_naming_what_it_hid():
    with serving() as server:
        ecr = client(server)
        base = f"http://127.0.0.1:{server.port}"
        # One page of 24 exactly: no link to an empty next page.
        for number in range(24):
            ecr.create_repository(repositoryName=f"bbb/r{number:04}")
        page = requests.get(base + "/gallery/").text
        assert len(re.findall('class="repository-link"', page)) == 24 and 'id="next-page"' not in page
        # A search looks through 1,000 repositories a page. The 1,000th here is hidden by its
        # policy, and it is where the next page goes on from: the link must not name it.
        for number in range(24, 1001):
            ecr.create_repository(repositoryName=f"bbb/r{number:04}")
        hidden = "bbb/r0999"
        ecr.set_repository_policy(repositoryName=hidden, policyText=_deny("*", "BatchGetImage"))
        first = requests.get(base + "/gallery/", params={"q": "r1000"}).text
        assert 'id="no-repositories"' in first and "stopped before the end of the list of names containing" in first
        note = first.split('class="note"')[1].split("</p>")[0].replace("r1000", "")
        assert not re.search(r"\d", note), "no count: with the bound's, it would tell how many matching ones are hidden"
        link = re.search(r'id="next-page" href="([^"]+)"', first).group(1).replace("&amp;", "&")
        assert "r0999" not in link and "bbb" not in link
        assert re.findall(r'repository-link" href="[^"]+">([^<]+)<', requests.get(base + link).text) == ["bbb/r1000"]
        assert requests.get(base + "/gallery/?after=" + "A" * 40).status_code == 400


def test_a_full_page_followed_only_by_hidden_repositories_links_to_no_next_page():
    """A next page is linked only when a repository the viewer may see follows: a link to an empty
    page told a stranger that repositories hidden from them exist."""
    with serving() as server:
        ecr = client(server)
        for number in range(24):
            ecr.create_repository(repositoryName=f"shown/r{number:02}")
        ecr.create_repository(repositoryName="zz/hidden")
        ecr.set_repository_policy(repositoryName="zz/hidden", policyText=_deny("*", "BatchGetImage"))
        base = f"http://127.0.0.1:{server.port}"
        first = requests.get(base + "/gallery/").text
        assert first.count('class="repository-link"') == 24 and 'id="next-page"' not in first
        ecr.create_repository(repositoryName="zz/shown")
        first = requests.get(base + "/gallery/").text
        link = re.search(r'id="next-page" href="([^"]+)"', first).group(1).replace("&amp;", "&")
        assert re.findall(r'repository-link" href="[^"]+">([^<]+)<', requests.get(base + link).text) == ["zz/shown"]


def test_a_run_of_hidden_repositories_neither_empties_a_page_nor_shows_in_its_note():
    """More than a page's scan bound (1,000) of repositories hidden from the viewer, first by name:
    the first page showed nothing, and said it had looked through 1,000 repositories, which told
    a stranger that at least that many were hidden from them. A card whose repository has more
    tags than a page reads says its latest tag is of the first ones."""
    from concurrent.futures import ThreadPoolExecutor
    with serving() as server:
        ecr = client(server)

        def hide(number):
            name = f"a-hidden/h{number:04}"
            ecr.create_repository(repositoryName=name)
            ecr.set_repository_policy(repositoryName=name, policyText=_deny("*", "BatchGetImage"))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(hide, range(1050)))
        ecr.create_repository(repositoryName="b-shown/app")
        base = f"http://127.0.0.1:{server.port}"
        first = requests.get(base + "/gallery/").text
        assert re.findall(r'repository-link" href="[^"]+">([^<]+)<', first) == ["b-shown/app"]
        assert 'class="note"' not in first and "hidden" not in first
        # 1,001 tags: the card names the newest of the first 1,000 by name, and says so (the
        # newest of all, t1000, is past them). The last two go one after another, each later.
        manifest = push_image(ecr, "b-shown/app", [b"a layer"], "t0000")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: ecr.put_image(repositoryName="b-shown/app", imageManifest=manifest, imageTag=f"t{n:04}"), range(1, 999)))
        for n in (999, 1000):
            time.sleep(0.01)
            ecr.put_image(repositoryName="b-shown/app", imageManifest=manifest, imageTag=f"t{n:04}")
        card = requests.get(base + "/gallery/").text
        assert "Latest tag (of the first 1000 tags by name)" in card and "<code>t0999</code>" in card


def _deny(principal, action):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "Deny", "Effect": "Deny", "Principal": principal if principal == "*" else {"AWS": principal}, "Action": [f"ecr-public:{action}"]}]})


def test_pages_of_repositories_search_audit_filters_and_an_expired_upload():
    with serving("--upload-expiry", "1", "--sweep-interval", "1") as server:
        ecr = client(server)
        for number in range(30):
            ecr.create_repository(repositoryName=f"page/r{number:02}")
        other = boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                             aws_access_key_id="AKIDOTHER", aws_secret_access_key="othersecret",
                             config=Config(retries={"max_attempts": 1, "mode": "standard"}))
        mine = ecr.initiate_layer_upload(repositoryName="page/r00")["uploadId"]
        theirs = other.initiate_layer_upload(repositoryName="page/r01")["uploadId"]
        base = f"http://127.0.0.1:{server.port}"

        def names(html):
            return re.findall(r'class="repository-link" href="/gallery/repositories/[^"]+">([^<]+)</a>', html)

        # 24 a page, in name order, and the next page after the last one shown.
        first = requests.get(base + "/gallery/").text
        assert names(first) == [f"page/r{n:02}" for n in range(24)]
        next_path = re.search(r'id="next-page" href="([^"]+)"', first).group(1).replace("&amp;", "&")
        second = requests.get(base + next_path).text
        assert names(second) == [f"page/r{n:02}" for n in range(24, 30)] and 'id="next-page"' not in second
        # A search keeps to names that contain it, in any case.
        assert names(requests.get(base + "/gallery/", params={"q": "R2"}).text) == [f"page/r{n}" for n in range(20, 30)]
        assert 'id="no-repositories"' in requests.get(base + "/gallery/", params={"q": "nothing-like-this"}).text
        # As a browser's GET form sends it, a space as `+`: trimmed like any other.
        assert names(requests.get(base + "/gallery/?q=+R2+").text) == [f"page/r{n}" for n in range(20, 30)]

        # The idle upload expires, and its repository's page says so to this registry's keys.
        session = requests.Session()
        assert session.post(base + "/gallery/sign-in", data={"accessKeyId": "test", "secretAccessKey": "test"}, allow_redirects=False).status_code == 303
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page = session.get(base + "/gallery/repositories/page/r00").text
            if 'class="state expired"' in page:
                break
            time.sleep(0.5)
        assert f"<code>{mine}</code>" in page and 'class="state expired">expired<' in page

        # The audit trail's filters: by principal, by repository (by name, or registry/name).

        def uploads(**filters):
            return re.findall(r"<td><code>([0-9a-f-]{36})</code></td>", session.get(base + "/gallery/audit", params=filters).text)
        assert uploads() == [theirs, mine]
        assert uploads(principal="AKIDOTHER") == [theirs]
        assert uploads(repository="page/r00") == [mine]
        assert uploads(repository=f"{REGISTRY_ID}/page/r01") == [theirs]
        assert uploads(source="boto3", principal="test") == [mine]
        assert uploads(source="registry") == []

        # More than a page: "Older initiations" goes on from the last row shown, none skipped or repeated.
        more = [ecr.initiate_layer_upload(repositoryName="page/r02")["uploadId"] for _ in range(101)]
        first_page = session.get(base + "/gallery/audit").text
        older = re.search(r'id="older" href="([^"]+)"', first_page).group(1).replace("&amp;", "&")
        shown = re.findall(r"<td><code>([0-9a-f-]{36})</code></td>", first_page) + re.findall(r"<td><code>([0-9a-f-]{36})</code></td>", session.get(base + older).text)
        assert shown == list(reversed(more)) + [theirs, mine]
        assert 'id="older"' not in session.get(base + older).text  # its last page links to no empty one
        assert session.get(base + "/gallery/audit", params={"before": "not hex"}).status_code == 400

        # The live stream resumes after the last event a browser was sent (Last-Event-ID), not again from `after`.
        positions = [event["position"] for event in server.events() if event["type"] == "UploadInitiated"]
        assert len(positions) == 103
        with session.get(base + "/gallery/audit/stream?after=0", headers={"Last-Event-ID": str(positions[0])}, stream=True, timeout=10) as stream:
            ids = []
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("id: "):
                    ids.append(int(line[4:].split(".")[0]))
                if line.startswith("event: log"):
                    break
        assert ids[0] == positions[1], ids

        # Exactly a page of matches (and one more match than a page): an "Older" link only to more.
        def page_of(repository):
            html = session.get(base + "/gallery/audit", params={"repository": repository, "hours": 0}).text
            return re.findall(r"<td><code>([0-9a-f-]{36})</code></td>", html), 'id="older"' in html
        hundred = [ecr.initiate_layer_upload(repositoryName="page/r03")["uploadId"] for _ in range(100)]
        assert page_of("page/r03") == (list(reversed(hundred)), False)
        ecr.initiate_layer_upload(repositoryName="page/r03")
        assert page_of("page/r03")[1]


def test_behind_a_proxy_the_public_url_is_the_origin_and_cookies_are_secure():
    with serving("--public-url", "https://Registry.Example.com") as server:
        base = f"http://127.0.0.1:{server.port}"
        form = {"accessKeyId": "test", "secretAccessKey": "test"}
        # A proxy that rewrites Host: the browser's Origin is the public URL's, as browsers write it.
        signed = requests.post(base + "/gallery/sign-in", data=form, headers={"Origin": "https://registry.example.com"}, allow_redirects=False)
        assert signed.status_code == 303 and signed.headers["Set-Cookie"].endswith("; Secure")
        assert requests.post(base + "/gallery/sign-in", data=form, headers={"Origin": "https://other.example.com"}, allow_redirects=False).status_code == 403
        # Plain http at the public host (a page anyone on the network path may serve) is another origin.
        downgraded = {"Origin": "http://registry.example.com", "Host": "registry.example.com"}
        assert requests.post(base + "/gallery/sign-in", data=form, headers=downgraded, allow_redirects=False).status_code == 403


def test_the_live_audit_stream_ends_when_the_log_no_longer_holds_what_the_page_was_sent():
    """A page's stream resumed (Last-Event-ID: a `log` message's `POS.LEAF`) against a log that no
    longer holds that event there (a restore, a failover that lost commits: another history, or a
    shorter log) is told `changed` and ends, rather than resume from a position in another history."""
    def signed_in(server):
        session, base = requests.Session(), f"http://127.0.0.1:{server.port}"
        form = {"accessKeyId": "test", "secretAccessKey": "test", "next": "/gallery/audit"}
        assert session.post(base + "/gallery/sign-in", data=form, headers={"Origin": base}, allow_redirects=False).status_code == 303
        return session, base

    def first(session, base, last_event_id, wanted):
        """The stream's lines up to the first that starts with one of `wanted`."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        with session.get(base + "/gallery/audit/stream?after=0", headers=headers, stream=True, timeout=10) as stream:
            lines = []
            for line in stream.iter_lines(decode_unicode=True):
                lines.append(line)
                if line.startswith(wanted):
                    return lines
        return lines

    def log_id(lines):
        return [line[4:] for line in lines if line.startswith("id: ") and "." in line][-1]

    with serving() as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="stream/a")
        for _ in range(3):
            ecr.initiate_layer_upload(repositoryName="stream/a")
        session, base = signed_in(server)
        lines = first(session, base, None, ('data: {"treeSize"',))
        sent = log_id(lines)
        assert sent.startswith("4.") and len(sent) == 2 + 64, lines
        # Every message's id carries its event's leaf: the initiation at 4 has the log message's id.
        ids = [line[4:] for line in lines if line.startswith("id: ")]
        assert all(re.fullmatch(r"\d+\.[0-9a-f]{64}", i) for i in ids) and ids.count(sent) == 2, lines
        # Control: resumed where it was, on the same log, it goes on with what comes next.
        ecr.initiate_layer_upload(repositoryName="stream/a")
        assert first(session, base, sent, ("event: initiation", "event: changed"))[-1] == "event: initiation"
        # An id that does not parse is ignored (the stream starts at `after`); "." once killed the server.
        for malformed in ("", ".", "..", "abc", "x.y"):
            lines = first(session, base, malformed, ("event: initiation",))
            assert lines[-1] == "event: initiation", (malformed, lines)
        assert first(session, base, sent, ("event: initiation", "event: changed"))[-1] == "event: initiation", "still serving"

    for events in (6, 1):  # another history past position 4, and a log shorter than 4
        with serving() as server:
            ecr = client(server)
            ecr.create_repository(repositoryName="stream/b")
            for _ in range(events - 1):
                ecr.initiate_layer_upload(repositoryName="stream/b")
            session, base = signed_in(server)
            assert first(session, base, sent, ("event: initiation", "event: changed"))[-1] == "event: changed", events


def test_a_page_sent_no_event_yet_still_finds_its_history_gone():
    """A page's stream URL carries the leaf its rows reached: a browser that was sent no event
    (so no Last-Event-ID to send back) reconnecting to a log that was taken back is told `changed`."""
    def page_stream(server):
        session, base = requests.Session(), f"http://127.0.0.1:{server.port}"
        form = {"accessKeyId": "test", "secretAccessKey": "test", "next": "/gallery/audit"}
        assert session.post(base + "/gallery/sign-in", data=form, headers={"Origin": base}, allow_redirects=False).status_code == 303
        path = re.search(r'data-stream="([^"]+)"', session.get(base + "/gallery/audit").text).group(1).replace("&amp;", "&")
        return session, base, path

    def first(session, url, wanted):
        with session.get(url, stream=True, timeout=10) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith(wanted):
                    return line

    with serving() as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="stream/a")
        for _ in range(3):
            ecr.initiate_layer_upload(repositoryName="stream/a")
        session, base, path = page_stream(server)
        assert re.search(r"after=4&leaf=[0-9a-f]{64}&", path), path
        ecr.initiate_layer_upload(repositoryName="stream/a")
        assert first(session, base + path, ("event: initiation", "event: changed")) == "event: initiation", "the same history goes on"
    with serving() as server:  # another history at position 4
        ecr = client(server)
        ecr.create_repository(repositoryName="stream/b")
        for _ in range(5):
            ecr.initiate_layer_upload(repositoryName="stream/b")
        session, base, _ = page_stream(server)
        assert first(session, base + path, ("event: initiation", "event: changed")) == "event: changed"


def test_the_audit_trail_names_an_initiation_made_from_the_command_line():
    """The CLI writes to the store beside serve (two processes on one store): its initiations are
    named by the front end the log records, and filtered as such, not lumped with unknown clients."""
    with serving() as server:
        client(server).create_repository(repositoryName="cli/app")
        out = server.tool("upload-coordinator", "initiate-layer-upload", "--data-dir", server.data_dir, "--repository-name", "cli/app")
        assert out.returncode == 0, out.stderr
        upload_id = json.loads(out.stdout)["uploadId"]
        session, base = requests.Session(), f"http://127.0.0.1:{server.port}"
        assert session.post(base + "/gallery/sign-in", data={"accessKeyId": "test", "secretAccessKey": "test"}, allow_redirects=False).status_code == 303

        def uploads(**filters):
            page = session.get(base + "/gallery/audit", params=filters).text
            return re.findall(r"<td><code>([0-9a-f-]{36})</code></td>", page), page
        listed, page = uploads(source="cli")
        assert listed == [upload_id] and "upload-coordinator (command line)" in page
        assert uploads(source="other")[0] == []
        # Its principal is the command line's, not "anonymous" (which is --allow-anonymous's calls).
        assert uploads(principal="command-line")[0] == [upload_id] and uploads(principal="anonymous")[0] == []
        # And so in `audit initiations --json` too, as its table shows it (the metadata has none).
        audit = server.tool("upload-coordinator", "audit", "initiations", "--data-dir", server.data_dir, "--repository", "cli/app", "--json")
        assert [json.loads(line)["principal"] for line in audit.stdout.splitlines()] == ["command-line"], audit.stderr


def test_a_sign_out_that_cannot_be_recorded_keeps_the_session_to_sign_out_again():
    """A sign-out the server cannot record (its lock unusable here) is refused (503) and leaves the
    cookie, so that signing out again ends the session once it can be recorded."""
    with serving() as server:
        session, base = requests.Session(), f"http://127.0.0.1:{server.port}"
        form = {"accessKeyId": "test", "secretAccessKey": "test"}
        assert session.post(base + "/gallery/sign-in", data=form, headers={"Origin": base}, allow_redirects=False).status_code == 303
        copy = dict(session.cookies)
        # A folder where the lock goes; then where the record goes (unreadable: sessions are
        # refused meanwhile, but the sign-out is still refused, not skipped).
        for blocked, signed_in in (("page-sign-outs.lock", 200), ("page-sign-outs", 303)):
            blocker = os.path.join(server.data_dir, blocked)
            os.mkdir(blocker)
            try:
                refused = session.post(base + "/gallery/sign-out", allow_redirects=False)
                assert refused.status_code == 503 and "Set-Cookie" not in refused.headers, (blocked, refused.headers)
                assert session.get(base + "/gallery/audit", allow_redirects=False).status_code == signed_in, blocked
                if blocked == "page-sign-outs":
                    # A sign-in meanwhile is refused, saying why, and given no cookie its next page refuses.
                    again = requests.post(base + "/gallery/sign-in", data=form, headers={"Origin": base}, allow_redirects=False)
                    assert again.status_code == 503 and "Set-Cookie" not in again.headers and "record of sign-outs" in again.text
            finally:
                os.rmdir(blocker)
            assert session.get(base + "/gallery/audit", allow_redirects=False).status_code == 200, "still signed in"
        assert session.post(base + "/gallery/sign-out", allow_redirects=False).status_code == 303
        assert requests.get(base + "/gallery/audit", cookies=copy, allow_redirects=False).status_code == 303
