"""Opening an HTTP camera's stream on httpx: credentials, redirects and the URL policy.

Credentials come from the URL (`http://user:password@camera/...`), as camera URLs are
written, and are sent only once the camera asked with a 401: Digest (httpx's `DigestAuth`)
when its `WWW-Authenticate` offers it, so a Digest camera never sees the password in the
clear; else Basic, also for a 401 without a challenge. They go to the URL's own origin only.

Redirects are followed here, not by httpx (at most MAX_REDIRECTS): each target is checked by
the source URL policy again, after DNS, and the request goes to an address the policy
checked (`Host` and TLS SNI keep the name), so a second DNS answer cannot differ.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Generator
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from producers.deadline import Watchdog
from shared.urlpolicy import (
    DEFAULT_PORTS,
    CheckedSource,
    SourcePolicy,
    SourcePolicyError,
    check_source_url,
)

MAX_REDIRECTS = 3
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# What httpx's DigestAuth computes; a camera asking for anything else gets a clear refusal.
DIGEST_ALGORITHMS = frozenset(
    f"{name}{sess}" for name in ("MD5", "SHA", "SHA-256", "SHA-512") for sess in ("", "-SESS")
)
HEADERS = {
    "Accept": "multipart/x-mixed-replace",
    "Accept-Encoding": "identity",  # the body goes to the part parser as sent
}


class AuthError(ValueError):
    """The camera asks for an authentication Lookout cannot give."""


class RedirectRefused(Exception):
    """A redirect to a URL the source policy (or the http(s) rule) refuses."""


class CameraAuth(httpx.Auth):
    """Answers a camera's 401 with Digest when it offers Digest, else with Basic."""

    def __init__(self, user: str, password: str) -> None:
        self._digest = httpx.DigestAuth(user, password)
        self._basic = httpx.BasicAuth(user, password)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request  # nothing is sent before the camera asks
        if response.status_code != 401:
            return
        challenges = response.headers.get_list("www-authenticate")
        digest = next((c for c in challenges if c.lower().startswith("digest ")), None)
        if digest is None:
            yield next(self._basic.auth_flow(request))
            return
        check_digest(digest)
        flow = self._digest.auth_flow(request)
        next(flow)  # its first request went out without credentials: `response` answers it
        yield flow.send(response)


def check_digest(challenge: str) -> None:
    """AuthError unless httpx's DigestAuth can answer `challenge` (a WWW-Authenticate value)."""
    fields = urllib.request.parse_http_list(challenge.partition(" ")[2])
    params = {
        k.strip().lower(): v.strip().strip('"') for k, _, v in (f.partition("=") for f in fields)
    }
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in DIGEST_ALGORITHMS:
        raise AuthError(
            f"the camera asks for Digest with {algorithm}; MD5, SHA, SHA-256, SHA-512 "
            "(and their -sess forms) work"
        )
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    if qops and "auth" not in qops:
        raise AuthError(f"the camera asks for Digest qop {', '.join(qops)}; qop=auth works")


def camera_auth(url: str) -> CameraAuth | None:
    """The answer to a 401 from the `user:password` of `url` (percent-decoded), if any."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return CameraAuth(unquote(parts.username), unquote(parts.password or ""))


def camera_client() -> httpx.Client:
    """A client for one camera: no proxy or .netrc from the environment, the system's CAs."""
    return httpx.Client(headers=HEADERS, trust_env=False, verify=ssl.create_default_context())


def open_stream(
    client: httpx.Client,
    url: str,
    checked: CheckedSource | None,
    policy: SourcePolicy | None,
    watchdog: Watchdog,
    read_timeout: float,
) -> httpx.Response:
    """The streamed response of `url`'s camera after its redirects, each checked by `policy`.

    Raises RedirectRefused, AuthError for an authentication Lookout
    cannot give, OSError or httpx.HTTPError for the rest (unreachable, too many redirects).
    """
    shown_origin = _origin(url)
    auth = camera_auth(url)
    for _ in range(MAX_REDIRECTS + 1):
        response = _get(client, url, checked, auth, watchdog, read_timeout)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return response
        response.close()
        target = urljoin(url, location)
        if _origin(target) != shown_origin:
            auth = None  # credentials go to the origin they were written for only
        url, checked = target, check_redirect(target, policy)
    raise OSError(f"more than {MAX_REDIRECTS} redirects")


def check_redirect(url: str, policy: SourcePolicy | None) -> CheckedSource | None:
    """What the policy checked of a redirect target (resolved); RedirectRefused if refused."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise RedirectRefused("redirects to a scheme other than http(s)")
    if policy is None:
        return None
    try:
        return check_source_url(url, policy, resolve=True)
    except SourcePolicyError as exc:
        raise RedirectRefused(f"redirects: {exc}") from None


def _get(
    client: httpx.Client,
    url: str,
    checked: CheckedSource | None,
    auth: CameraAuth | None,
    watchdog: Watchdog,
    read_timeout: float,
) -> httpx.Response:
    # Without its user:password, which httpx would otherwise send as Basic unasked.
    plain = httpx.URL(url).copy_with(username=None, password=None)
    errors: list[str] = []
    for address in (checked.addresses if checked else ()) or (None,):
        request = client.build_request(
            "GET",
            plain,  # sets the Host header
            timeout=httpx.Timeout(read_timeout, connect=watchdog.left()),
            extensions={"trace": watchdog.trace, "sni_hostname": plain.host},
        )
        if address is not None:  # connect to the checked address, not to a new DNS answer
            request.url = plain.copy_with(host=address)
        try:
            return _send(client, request, auth)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            errors.append(f"{address or plain.host}: {exc}")
    raise OSError("; ".join(errors))


def _send(client: httpx.Client, request: httpx.Request, auth: CameraAuth | None) -> httpx.Response:
    # httpx's own auth handling reads a 401's whole body, which a camera could make endless:
    # here it is closed unread, and the answer goes on a new connection.
    if auth is None:
        return client.send(request, stream=True)
    flow = auth.auth_flow(request)
    response = client.send(next(flow), stream=True)
    while True:
        try:
            retry = flow.send(response)
        except StopIteration:
            return response
        response.close()
        response = client.send(retry, stream=True)


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return (
        scheme,
        (parts.hostname or "").removesuffix("."),
        parts.port or DEFAULT_PORTS.get(scheme, 80),
    )
