"""The HTTP layer shared by the clients, models and executions: one requests.Session,
the user's API token, timeouts, error mapping and the one retry GETs get."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urljoin

import requests

from neomaril_codex import __version__
from neomaril_codex._upload import MultipartBody, PathLike, progress_for
from neomaril_codex.exceptions import AuthenticationError, NeomarilError, NetworkError, error_for_status

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# GETs are idempotent: one more try after a dropped connection (a restarted server,
# a stale keep-alive socket). Nothing else is ever retried: a POST that reached the
# server may have created a model or started an execution.
GET_RETRY_DELAY = 0.5

Timeout = Union[float, Tuple[float, float]]


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

    def absolute(self, path: str) -> str:
        """`path` under the API prefix (``/models`` → ``<url>/api/v1/models``); full URLs unchanged."""
        if path.startswith(("http://", "https://")):
            return path
        if not path.startswith("/api/"):
            path = API_PREFIX + path
        return urljoin(self.url + "/", path.lstrip("/"))

    def user_headers(self) -> Dict[str, str]:
        if not self.user_token:
            raise AuthenticationError("Not logged in: this client has no API token.")
        return {"Authorization": f"Token {self.user_token}"}

    @staticmethod
    def group_headers(group_token: str) -> Dict[str, str]:
        return {"Authorization": f"Bearer {group_token}"}

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        auth: bool = True,
        ok: Iterable[int] = (),
        timeout: Optional[Timeout] = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request; answers >= 400 (but those in `ok`) raise the matching NeomarilError.

        `auth` adds the user's token unless `headers` already carry an Authorization.
        """
        all_headers: Dict[str, str] = {}
        if auth and not (headers and "Authorization" in headers):
            all_headers.update(self.user_headers())
        all_headers.update(headers or {})
        url = self.absolute(path)
        attempts = 2 if method.upper() == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(
                    method, url, headers=all_headers, timeout=timeout or self.timeout, **kwargs
                )
                break
            except requests.Timeout as exc:
                if isinstance(exc, requests.ConnectionError) and attempt < attempts:  # ConnectTimeout
                    time.sleep(GET_RETRY_DELAY)
                    continue
                raise NetworkError(
                    f"{method} {url}: no answer within {timeout or self.timeout} s. "
                    "Pass a larger timeout= if the server is slow."
                ) from exc
            except requests.ConnectionError as exc:
                if attempt < attempts:
                    logger.debug("GET %s failed (%s); retrying once", url, exc)
                    time.sleep(GET_RETRY_DELAY)
                    continue
                raise NetworkError(f"Could not reach Neomaril at {self.url} ({method} {url}): {exc}") from exc
        if response.status_code >= 400 and response.status_code not in set(ok):
            error = error_for_status(response.status_code, _body(response), response.text)
            response.close()
            raise error
        return response

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, payload: Any = None, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=payload, **kwargs)
        return response.json() if response.content else {}

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
                timeout=(min(self.timeout, 30.0), self.upload_timeout),
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
        download never leaves a file that looks whole. Returns the file's path.
        """
        response = self.request("GET", path, headers=headers, stream=True)
        with response:
            name = filename or _attachment_name(response) or default
            target_folder = Path(folder)
            target_folder.mkdir(parents=True, exist_ok=True)
            target = target_folder / Path(name).name
            partial = target.with_name(target.name + ".part")
            try:
                with open(partial, "wb") as out:
                    for chunk in response.iter_content(chunk_size=1024 * 1024):
                        out.write(chunk)
                os.replace(partial, target)
            except BaseException:
                partial.unlink(missing_ok=True)  # missing_ok: Python 3.8+
                raise
        return target

    def paginate(
        self,
        path: str,
        params: Optional[Dict[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Iterator[Dict[str, Any]]:
        """Every item of a paginated list, following ``next`` links."""
        page = self.get_json(path, params={**(params or {}), "page_size": 500}, headers=headers)
        while True:
            yield from page.get("results", [])
            if not page.get("next"):
                return
            page = self.get_json(page["next"], headers=headers)


def _attachment_name(response: requests.Response) -> Optional[str]:
    """The file name in a Content-Disposition header (RFC 6266, ``filename*`` preferred)."""
    header = response.headers.get("Content-Disposition", "")
    match = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", header)
    if match:
        return unquote(match.group(2).strip(), encoding=match.group(1) or "utf-8")
    match = re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"', header) or re.search(
        r"filename\s*=\s*([^;]+)", header
    )
    return match.group(1).strip() if match else None


def env(name: str) -> Optional[str]:
    """An environment variable, None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None
