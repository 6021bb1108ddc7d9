"""The HTTP side every MetricTemplate provider shares: one client per provider object,
a second one that skips certificate checks made only when a template asks for
``insecureSkipVerify``, the template's ``headers``, and transport failures and error
statuses turned into :class:`~meshpilot.delivery.ports.MetricQueryError` naming the
provider, so a check says which backend failed and how."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.delivery.ports import MetricQueryError


def template_headers(provider: MetricTemplateProvider) -> dict[str, str]:
    """The template's ``headers``: each header's values joined as one HTTP list."""
    return {k: ", ".join(v) for k, v in (provider.headers or {}).items()}


class ProviderHTTP:
    """GETs to a provider's address within ``timeout`` seconds, following redirects
    as Flagger's Go clients do (httpx drops the credentials on a redirect to another
    host, as Go does)."""

    def __init__(self, client: httpx.Client | None = None, timeout: float = 5.0) -> None:
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=True)
        self._timeout = timeout
        self._unverified: httpx.Client | None = None

    def client_for(self, provider: MetricTemplateProvider) -> httpx.Client:
        if not provider.insecure_skip_verify:
            return self._client
        if self._unverified is None:
            self._unverified = httpx.Client(timeout=self._timeout, verify=False,
                                            follow_redirects=True)
        return self._unverified

    def get(self, provider: MetricTemplateProvider, url: str,
            params: list[tuple[str, str]] | Mapping[str, str],
            headers: Mapping[str, str]) -> httpx.Response:
        """The answer to a GET; MetricQueryError when there is none or its status is
        not 2xx, with the start of the body the provider explained it in."""
        try:
            response = self.client_for(provider).get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise MetricQueryError(
                f"{provider.type} at {provider.address} did not answer: {exc}") from exc
        if not response.is_success:
            raise MetricQueryError(
                f"{provider.type} answered {response.status_code}: {response.text[:200]}")
        return response
