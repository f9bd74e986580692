"""The HTTP layer shared by the clients, models and executions: one requests.Session,
the user's API token, timeouts, error mapping and the one retry GETs get."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urljoin

import requests
import urllib3

from neomaril_codex import __version__
from neomaril_codex._args import Timeout, checked_timeout, sendable_token
from neomaril_codex._upload import MultipartBody, PathLike, progress_for
from neomaril_codex.exceptions import (
    AuthenticationError,
    InputError,
    NeomarilError,
    NetworkError,
    ServerError,
    error_for_status,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# GETs are idempotent: one more try after a dropped connection (a restarted server,
# a stale keep-alive socket). Nothing else is ever retried: a POST that reached the
# server may have created a model or started an execution.
GET_RETRY_DELAY = 0.5
# What of a body that is not JSON goes into the error: enough to recognise a proxy's page.
SNIPPET_CHARS = 200


def json_default(value: Any) -> Any:
    """JSON for what users put in their inputs: numpy/pandas scalars and arrays, dates."""
    for method in ("tolist", "item", "isoformat"):
        if hasattr(value, method):
            return getattr(value, method)()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return json.dumps(value, default=json_default)


def _body(response: requests.Response) -> Optional[Dict[str, Any]]:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…"


def _not_neomaril(method: str, response: requests.Response) -> str:
    """What to say of an error answer that is not Neomaril's JSON: a wrong URL (another
    site's 404 page) or a proxy's page answered instead."""
    content_type = response.headers.get("Content-Type") or "no Content-Type"
    snippet = _snippet(response.text)
    try:
        response.json()
        kind = "JSON that is not Neomaril's error answer"
    except ValueError:
        kind = "a body that is not JSON"
    return (
        f"{method} {response.url} was answered with {kind} ({content_type}): "
        f"{repr(snippet) if snippet else 'an empty body'}. Is NEOMARIL_URL (url=) the portal's address? "
        "A proxy or another site may have answered instead."
    )


def json_of(response: requests.Response, fields: Optional[Sequence[str]] = None) -> Any:
    """The JSON of a successful answer; with `fields`, an object holding each of them.

    Raises:
        ServerError: the body is not JSON — typically not Neomaril answering (a wrong URL, a
            proxy's login page, an empty body) — or lacks what the SDK reads from it (a
            portal of another version, or not Neomaril); the message has the URL, the
            status and the start of the body.
    """
    method = response.request.method if response.request is not None else "?"
    try:
        answer = response.json()
    except ValueError:  # requests.JSONDecodeError (json's or simplejson's) is a ValueError
        content_type = response.headers.get("Content-Type") or "no Content-Type"
        snippet = _snippet(response.text)
        raise ServerError(
            f"{method} {response.url} answered HTTP {response.status_code} with a body that is not JSON "
            f"({content_type}): {repr(snippet) if snippet else 'an empty body'}. Is NEOMARIL_URL (url=) "
            "the portal's address? A proxy or another site may have answered instead.",
            status_code=response.status_code,
        ) from None
    if fields is None:
        return answer
    if not isinstance(answer, dict):
        lacking = f"a JSON object, not {_json_kind(answer)}"
    else:
        missing = [name for name in fields if name not in answer]
        if not missing:
            return answer
        lacking = "an object with " + ", ".join(repr(name) for name in missing)
    raise ServerError(
        f"{method} {response.url} answered HTTP {response.status_code} with JSON the SDK cannot use "
        f"(it needs {lacking}): {_snippet(response.text)!r}. Is NEOMARIL_URL (url=) the portal's "
        "address, and is the portal as new as this SDK?",
        status_code=response.status_code,
        body=answer if isinstance(answer, dict) else None,
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "a number"


def _seconds(timeout: Timeout, part: int) -> str:
    """The connect (`part` 0) or read (1) part of a timeout, for messages: "30 s"."""
    value = timeout[part] if isinstance(timeout, tuple) else timeout
    return f"{float(value):g} s" if value is not None else "no limit"


def _reason(exc: Exception) -> str:
    """An exception of requests, readable: its message, not the tuple of its causes."""
    reason: Any = exc
    while isinstance(reason, BaseException) and reason.args:  # requests wraps urllib3's errors
        reason = reason.args[0]
    return str(reason)


def _never_connected(exc: Exception) -> bool:
    """Whether a request's connection never opened (refused, unknown name, no route), so
    nothing of it reached the server."""
    if isinstance(exc, requests.exceptions.SSLError):  # the TLS handshake failed: nothing was sent
        return True
    cause: Any = exc.args[0] if exc.args else None
    reason = getattr(cause, "reason", cause)  # urllib3's MaxRetryError says why in `reason`
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _without_secrets(text: str, headers: Mapping[str, str]) -> str:
    """`text` (an exception's message) with the Authorization header's token blanked out."""
    credentials = headers.get("Authorization", "").split(" ", 1)[-1]
    return text.replace(credentials, "<token>") if credentials else text


class Connection:
    """A base URL, a session and the user's API token (``Authorization: Token …``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60.0,
        upload_timeout: float = 600.0,
        progress: Optional[bool] = None,
        verify: Union[bool, str] = True,
        session: Optional[requests.Session] = None,
    ) -> None:
        checked_timeout("timeout", timeout)
        checked_timeout("upload_timeout", upload_timeout)
        url = url.strip().rstrip("/")
        if url.endswith(API_PREFIX):  # people paste the API's URL as often as the portal's
            url = url[: -len(API_PREFIX)]
        if not url.startswith(("http://", "https://")):
            raise NeomarilError(f"The Neomaril URL must start with http:// or https://, got {url!r}.")
        self.url = url
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self.progress = progress
        self.session = session or requests.Session()
        if session is None or verify is not True:  # a given session keeps its own setting
            self.session.verify = verify
        self.session.headers["User-Agent"] = (
            f"neomaril-codex/{__version__} {requests.utils.default_user_agent()}"
        )
        self.user_token: Optional[str] = None
        self.closed = False  # set by the client's close()

    def absolute(self, path: str) -> str:
        """`path` under the API prefix (``/models`` → ``<url>/api/v1/models``); full URLs unchanged."""
        if path.startswith(("http://", "https://")):
            return path
        if not path.startswith("/api/"):
            path = API_PREFIX + path
        return urljoin(self.url + "/", path.lstrip("/"))

    def user_headers(self) -> Dict[str, str]:
        token = sendable_token(self.user_token, "the client's API token")
        if not token:
            if self.closed:
                raise AuthenticationError(
                    "This client was closed (close() revoked its token): make a new one."
                )
            raise AuthenticationError("Not logged in: this client has no API token.")
        return {"Authorization": f"Token {token}"}

    @staticmethod
    def group_headers(group_token: str) -> Dict[str, str]:
        token = sendable_token(group_token, "the group token")
        if not token:
            raise AuthenticationError("No group token: it is empty.")
        return {"Authorization": f"Bearer {token}"}

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        auth: bool = True,
        ok: Iterable[int] = (),
        timeout: Optional[Timeout] = None,
        timeout_argument: str = "timeout",
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request; answers >= 400 (but those in `ok`) raise the matching NeomarilError.

        `auth` adds the user's token unless `headers` already carry an Authorization.
        `timeout` (default: the client's) is checked first; `timeout_argument` is the
        argument that sets it, named in the message when it runs out.

        Raises:
            NetworkError: no connection, no answer in time, or an answer cut off (a GET is
                sent once more first); NeomarilError for anything else requests refused.
        """
        timeout = self.timeout if timeout is None else checked_timeout("timeout", timeout)
        all_headers: Dict[str, str] = {}
        if auth and not (headers and "Authorization" in headers):
            all_headers.update(self.user_headers())
        all_headers.update(headers or {})
        url = self.absolute(path)
        attempts = 2 if method.upper() == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(method, url, headers=all_headers, timeout=timeout, **kwargs)
                break
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                # A ConnectTimeout is a ConnectionError too (a ReadTimeout is not): retried.
                if attempt < attempts:
                    logger.debug("GET %s failed (%s); retrying once", url, exc)
                    time.sleep(GET_RETRY_DELAY)
                    continue
                raise self._network_error(method, url, exc, timeout, timeout_argument) from exc
            except requests.ReadTimeout as exc:
                raise self._network_error(method, url, exc, timeout, timeout_argument) from exc
            except requests.RequestException as exc:  # a header, URL or body requests refused
                reason = _without_secrets(str(exc), all_headers)
                raise NeomarilError(f"{method} {url} could not be sent: {reason}") from None
        if response.status_code >= 400 and response.status_code not in set(ok):
            body = _body(response)
            error = error_for_status(
                response.status_code,
                body,
                response.text if body is not None else _not_neomaril(method, response),
                retry_after=response.headers.get("Retry-After"),
            )
            response.close()
            raise error
        return response

    def _network_error(
        self, method: str, url: str, exc: Exception, timeout: Timeout, timeout_argument: str
    ) -> NetworkError:
        """The NetworkError of a request that got no (whole) answer."""
        if isinstance(exc, requests.ConnectTimeout):
            return NetworkError(
                f"Could not reach Neomaril at {self.url} ({method} {url}): no connection within "
                f"{_seconds(timeout, 0)}. Check NEOMARIL_URL and your network."
            )
        if isinstance(exc, requests.ReadTimeout):
            return NetworkError(
                f"{method} {url}: no answer within {_seconds(timeout, 1)}. "
                f"Pass a larger {timeout_argument}= if the server is slow."
            )
        cut_off = isinstance(exc, requests.exceptions.ChunkedEncodingError)
        if not cut_off and _never_connected(exc):
            hint = ""
            if isinstance(exc, requests.exceptions.SSLError):
                hint = (
                    " The TLS handshake failed, so nothing was sent: check that NEOMARIL_URL's scheme "
                    "(http or https) is the server's, and its certificate (verify=)."
                )
            return NetworkError(f"Could not reach Neomaril at {self.url} ({method} {url}): {exc}{hint}")
        # Connected, so the request may have been sent whole before the connection closed.
        answer = "the whole answer" if cut_off else "an answer"
        message = f"{method} {url}: the connection was dropped before {answer} arrived ({_reason(exc)})."
        if method.upper() != "GET":
            message += " The server may have carried it out: check before sending it again."
        return NetworkError(message)

    def get_json(self, path: str, fields: Optional[Sequence[str]] = None, **kwargs: Any) -> Any:
        """The answer's JSON; with `fields`, an object holding each of them (see json_of)."""
        return json_of(self.request("GET", path, **kwargs), fields)

    def post_json(
        self, path: str, payload: Any = None, fields: Optional[Sequence[str]] = None, **kwargs: Any
    ) -> Any:
        response = self.request("POST", path, json=payload, **kwargs)
        return {} if response.status_code == 204 and fields is None else json_of(response, fields)

    def upload(
        self,
        path: str,
        *,
        fields: Sequence[Tuple[str, str]],
        files: Sequence[Tuple[str, str, PathLike]],
        label: str,
        headers: Optional[Mapping[str, str]] = None,
        progress: Optional[bool] = None,
        ok: Iterable[int] = (),
    ) -> requests.Response:
        """POST a multipart body streamed from disk (see MultipartBody), with progress when asked."""
        bar = progress_for(label, files, self.progress if progress is None else progress)
        body = MultipartBody(fields, files, bar)
        all_headers = {"Content-Type": body.content_type, **(headers or {})}
        try:
            return self.request(
                "POST",
                path,
                data=body,
                headers=all_headers,
                timeout=(min(_connect_seconds(self.timeout), 30.0), self.upload_timeout),
                timeout_argument="upload_timeout",
                ok=ok,
            )
        finally:
            if bar is not None:
                bar.close()

    def download(
        self,
        path: str,
        folder: PathLike,
        *,
        filename: Optional[str],
        default: str,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Path:
        """GET `path` streamed to a file in `folder` (created if missing), named `filename`,
        else as the answer's Content-Disposition says, else `default`.

        The file is written as ``<name>.part`` and renamed when complete, so an interrupted
        download never leaves a file that looks whole. A file of that name already there
        is replaced only when `filename` named it; else the download is saved beside it as
        ``<name> (1)<suffix>`` (then 2, 3…), as browsers do: every Async result of a model
        is often called ``output.csv``, and downloading several into one folder kept only
        the last. Returns the file's path.

        Raises:
            InputError: `folder` is a file, or cannot be created or written in (the disk is
                full, no permission); the name is a folder's.
            NetworkError: the connection was lost during the download (nothing is kept).
        """
        target_folder = Path(folder)
        if target_folder.exists() and not target_folder.is_dir():
            raise InputError(
                f"path: '{target_folder}' is a file, not a folder. Pass the folder to save in "
                "(filename= chooses the file's name)."
            )
        response = self.request("GET", path, headers=headers, stream=True)
        with response:
            name = filename or _suggested_name(_attachment_name(response)) or default
            try:
                target_folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"path: could not create the folder '{target_folder}': {exc}") from None
            target = target_folder / Path(name).name
            if target.is_dir():
                raise InputError(f"filename: '{target}' is a folder; choose another filename=.")
            if filename is None:
                target = _unused_name(target)
            partial = target.with_name(target.name + ".part")
            try:
                with open(partial, "wb") as out:
                    for chunk in response.iter_content(chunk_size=1024 * 1024):
                        out.write(chunk)
                os.replace(partial, target)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                partial.unlink(missing_ok=True)  # missing_ok: Python 3.8+
                raise NetworkError(
                    f"GET {response.url}: the connection was dropped before the whole file arrived "
                    f"({_reason(exc)}); nothing was saved. Try again."
                ) from exc
            except requests.RequestException:  # an OSError too, but not the disk's: as it came
                partial.unlink(missing_ok=True)
                raise
            except OSError as exc:  # the disk full, no permission to write there...
                with contextlib.suppress(OSError):
                    partial.unlink(missing_ok=True)
                size = response.headers.get("Content-Length")
                announced = f" (the file is {int(size):,} bytes)" if size and size.isdigit() else ""
                raise InputError(
                    f"path: could not save '{target}'{announced}: {exc.strerror or exc}; nothing was saved."
                ) from None
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        return target

    def paginate(
        self,
        path: str,
        params: Optional[Dict[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Iterator[Dict[str, Any]]:
        """Every item of a paginated list, following ``next`` links."""
        page = self.get_json(path, ("results",), params={**(params or {}), "page_size": 500}, headers=headers)
        while True:
            yield from page.get("results", [])
            if not page.get("next"):
                return
            page = self.get_json(page["next"], ("results",), headers=headers)


def _connect_seconds(timeout: Timeout) -> float:
    """The connect part of a timeout, in seconds (no limit counts as a long one)."""
    value = timeout[0] if isinstance(timeout, tuple) else timeout
    return float(value) if value is not None else math.inf


def _unused_name(target: Path) -> Path:
    """`target`, or ``<stem> (n)<suffix>`` beside it with the first n not taken."""
    if not target.exists():
        return target
    n = 1
    while True:
        other = target.with_name(f"{target.stem} ({n}){target.suffix}")
        if not other.exists():
            logger.info("'%s' exists: saving the download as '%s'", target, other.name)
            return other
        n += 1


def _attachment_name(response: requests.Response) -> Optional[str]:
    """The file name in a Content-Disposition header (RFC 6266, ``filename*`` preferred)."""
    header = response.headers.get("Content-Disposition", "")
    match = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", header)
    if match:
        return unquote(match.group(2).strip(), encoding=match.group(1) or "utf-8")
    quoted = re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"', header)
    if quoted:  # a quoted-string: \" is ", \\ is \
        return re.sub(r"\\(.)", r"\1", quoted.group(1)).strip()
    match = re.search(r"filename\s*=\s*([^;]+)", header)
    return match.group(1).strip() if match else None


def _suggested_name(name: Optional[str]) -> Optional[str]:
    """The server's file name, made safe to save under: its last part, with a leading dot
    made an underscore as browsers do. The name is the model's choice: a result named
    ``.env`` or ``.bashrc`` must not replace the user's own hidden files."""
    if not name:
        return None
    name = Path(name).name
    if name.startswith("."):
        name = "_" + name[1:]
    return name or None


def env(name: str) -> Optional[str]:
    """An environment variable, None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None
