"""A Python client of the storemon API: trigger a report, wait for it (Server-Sent
Events, no polling), download it, list, delete, read rows, ask one store live.

    async with Client("http://127.0.0.1:8080", token="...") as api:
        report_id = await api.trigger(as_of="2023-01-25T18:00:00Z")
        done = await api.wait(report_id)          # {"status": "Complete", ...}
        await api.download(report_id, Path("report.csv"))

`SyncClient` offers the same calls without asyncio, for scripts. Errors the API
answers raise `ApiCallError` with its status, code and message (and Retry-After);
a report that fails is a `ReportFailed` from `wait`.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from storemon.config import Settings

T = TypeVar("T")

#: Statuses a report ends with.
ENDED = ("Complete", "Failed")
DEFAULT_TIMEOUT_S = 30.0


class ApiCallError(Exception):
    """The API answered with an error, or could not be reached: one line saying which."""

    def __init__(
        self, message: str, status: int | None = None, code: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class ReportFailed(Exception):
    """The report ended Failed; `status` is its last status (with `error`)."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(f"report {status['report_id']} failed: {status.get('error')}")
        self.status = status


class Client:
    """The API at `base_url`, with a bearer `token` when it needs one."""

    def __init__(
        self, base_url: str, token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s,
                                              sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        """STOREMON_API_URL and STOREMON_API_TOKEN(_FILE)."""
        return cls(settings.client_api_url(), settings.api_token)

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use the client in `async with Client(...)`")
        return self._session

    async def _request(
        self, method: str, path: str, *, json_body: Any = None, accept: str = "application/json",
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
    ) -> T:
        url = self.base_url + path
        try:
            async with self.session.request(
                method, url, json=json_body, headers={"Accept": accept}
            ) as response:
                if response.status >= 400:
                    raise await _error(url, response)
                return await read(response)
        except aiohttp.ClientError as exc:
            raise ApiCallError(f"{url}: {exc}") from None

    async def _json(self, method: str, path: str, json_body: Any = None) -> dict[str, Any]:
        async def read(response: aiohttp.ClientResponse) -> dict[str, Any]:
            answer: dict[str, Any] = await response.json()
            return answer

        return await self._request(method, path, json_body=json_body, read=read)

    async def trigger(
        self, as_of: str | None = None, store_ids: list[str] | None = None,
        callback_url: str | None = None,
    ) -> str:
        """A new report's id, once its request is in Kafka (`callback_url`: where the API
        posts its ending, signed)."""
        body = {
            key: value
            for key, value in (
                ("as_of", as_of), ("store_ids", store_ids), ("callback_url", callback_url)
            )
            if value is not None
        }
        answer = await self._json("POST", "/trigger_report", body)
        return str(answer["report_id"])

    async def status(self, report_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/get_report?report_id={report_id}")

    async def statuses(self, report_id: str) -> AsyncIterator[dict[str, Any]]:
        """The report's status now, then at each change, until it ends (GET
        /reports/{id}/events, Server-Sent Events)."""
        url = f"{self.base_url}/reports/{report_id}/events"
        try:
            async with self.session.get(url, headers={"Accept": "text/event-stream"}) as response:
                if response.status >= 400:
                    raise await _error(url, response)
                event, data = "", []
                async for raw in response.content:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith(":"):
                        continue
                    if line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            event = value
                        elif name == "data":
                            data.append(value)
                        continue
                    if event == "status" and data:
                        yield json.loads("\n".join(data))
                    elif event == "error" and data:
                        failure = json.loads("\n".join(data))["error"]
                        raise ApiCallError(f"{url}: {failure['message']}", code=failure["code"])
                    event, data = "", []
        except aiohttp.ClientError as exc:
            raise ApiCallError(f"{url}: {exc}") from None

    async def wait(
        self,
        report_id: str,
        timeout_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The report's final status once it ends; ReportFailed if Failed; TimeoutError
        after `timeout_s`. `on_status` sees every status on the way."""

        async def until_ended() -> dict[str, Any]:
            while True:  # a stream cut short (a restarted API) is opened again
                async for status in self.statuses(report_id):
                    if on_status is not None:
                        on_status(status)
                    if status["status"] in ENDED:
                        return status

        final = await asyncio.wait_for(until_ended(), timeout_s)
        if final["status"] == "Failed":
            raise ReportFailed(final)
        return final

    async def download(self, report_id: str, path: Path) -> int:
        """The report's CSV into `path` (written whole, then renamed); its size."""
        partial = path.with_name(path.name + ".part")

        async def save(response: aiohttp.ClientResponse) -> int:
            size = 0
            with partial.open("wb") as out:
                async for chunk in response.content.iter_chunked(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
            if response.content_length is not None and size != response.content_length:
                raise ApiCallError(f"download of {report_id} ended short ({size} bytes)")
            return size

        try:
            size = await self._request(
                "GET", f"/reports/{report_id}.csv", accept="text/csv", read=save
            )
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(path)
        return size

    async def csv(self, report_id: str) -> bytes:
        async def read(response: aiohttp.ClientResponse) -> bytes:
            return await response.read()

        return await self._request("GET", f"/reports/{report_id}.csv", accept="text/csv",
                                   read=read)

    async def reports(
        self, status: str | None = None, since: str | None = None, limit: int = 50
    ) -> AsyncIterator[dict[str, Any]]:
        """Reports, newest first, every page (`limit` a page)."""
        query = {key: value for key, value in
                 (("status", status), ("since", since), ("limit", str(limit))) if value}
        path: str | None = f"/reports?{urllib.parse.urlencode(query)}"
        while path is not None:
            page = await self._json("GET", path)
            for report in page["reports"]:
                yield report
            path = page.get("next")

    async def delete(self, report_id: str) -> None:
        async def read(response: aiohttp.ClientResponse) -> None:
            return None

        await self._request("DELETE", f"/reports/{report_id}", read=read)

    async def rows(self, report_id: str, store_ids: list[str]) -> list[dict[str, Any]]:
        """The rows of those stores in a Complete report."""
        query = urllib.parse.urlencode([("store_id", store_id) for store_id in store_ids])
        answer = await self._json("GET", f"/reports/{report_id}/rows?{query}")
        rows: list[dict[str, Any]] = answer["rows"]
        return rows

    async def store(self, store_id: str, as_of: str | None = None) -> dict[str, Any]:
        """One store, live (GET /stores/{id})."""
        path = f"/stores/{urllib.parse.quote(store_id, safe='')}"
        if as_of is not None:
            path += f"?{urllib.parse.urlencode({'as_of': as_of})}"
        return await self._json("GET", path)

    async def store_polls(
        self, store_id: str, since: str | None = None, until: str | None = None
    ) -> AsyncIterator[dict[str, str]]:
        """The polls the store's owner holds in [since, until), every page."""
        query = {key: value for key, value in (("since", since), ("until", until)) if value}
        path: str | None = f"/stores/{urllib.parse.quote(store_id, safe='')}/polls"
        if query:
            path += f"?{urllib.parse.urlencode(query)}"
        while path is not None:
            page = await self._json("GET", path)
            for poll in page["polls"]:
                yield poll
            path = page["next"]


async def _error(url: str, response: aiohttp.ClientResponse) -> ApiCallError:
    try:
        error = (await response.json())["error"]
        code, message = error["code"], error["message"]
    except (aiohttp.ContentTypeError, ValueError, KeyError, TypeError):
        code, message = None, response.reason or "error"
    retry_after = response.headers.get("Retry-After")
    hint = f" (try again in {retry_after} s)" if retry_after else ""
    return ApiCallError(
        f"{url}: HTTP {response.status}: {message}{hint}", response.status, code, retry_after
    )


class SyncClient:
    """`Client`'s calls without asyncio: `with SyncClient(url, token) as api: ...`."""

    def __init__(self, base_url: str, token: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._client = Client(base_url, token, timeout_s)
        self._runner = asyncio.Runner()

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncClient:
        return cls(settings.client_api_url(), settings.api_token)

    def __enter__(self) -> SyncClient:
        self._runner.run(self._client.__aenter__())
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self._runner.run(self._client.__aexit__(kind, error, trace))
        finally:
            self._runner.close()

    def _run(self, call: Awaitable[T]) -> T:
        return self._runner.run(call)  # type: ignore[arg-type]

    def _all(self, items: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self._run(anext(items))
            except StopAsyncIteration:
                return

    def trigger(self, as_of: str | None = None, store_ids: list[str] | None = None,
                callback_url: str | None = None) -> str:
        return self._run(self._client.trigger(as_of, store_ids, callback_url))

    def status(self, report_id: str) -> dict[str, Any]:
        return self._run(self._client.status(report_id))

    def wait(self, report_id: str, timeout_s: float | None = None,
             on_status: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        return self._run(self._client.wait(report_id, timeout_s, on_status))

    def download(self, report_id: str, path: Path) -> int:
        return self._run(self._client.download(report_id, path))

    def csv(self, report_id: str) -> bytes:
        return self._run(self._client.csv(report_id))

    def reports(self, status: str | None = None, since: str | None = None,
                limit: int = 50) -> Iterator[dict[str, Any]]:
        return self._all(self._client.reports(status, since, limit))

    def delete(self, report_id: str) -> None:
        self._run(self._client.delete(report_id))

    def rows(self, report_id: str, store_ids: list[str]) -> list[dict[str, Any]]:
        return self._run(self._client.rows(report_id, store_ids))

    def store(self, store_id: str, as_of: str | None = None) -> dict[str, Any]:
        return self._run(self._client.store(store_id, as_of))

    def store_polls(self, store_id: str, since: str | None = None,
                    until: str | None = None) -> Iterator[dict[str, str]]:
        return self._all(self._client.store_polls(store_id, since, until))
