"""The influxdb metric provider against a real InfluxDB 1.x (Debian's ``influxd``, with
authentication on), started once for this module.

Flagger's influxdb provider (``pkg/metrics/providers/influxdb.go``) sends Flux to
InfluxDB 2's ``/api/v2/query`` with a token and an organisation; the first case shows
that endpoint is not there in the InfluxDB these tests run, which is why meshpilot
refuses Flux at apply (MP0074) and queries InfluxQL over ``/query``. The others follow
Flagger's provider where 1.x allows: credentials from the ``secretRef`` Secret, a null
value is "no values", a query error fails the check.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.metric_backends import INFLUX_PASSWORD, INFLUX_USER, InfluxDB, now
from tests.provider_rollouts import ProviderHarness, secret, template

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers.influxdb import InfluxDBProvider

CREDENTIALS = {"username": INFLUX_USER.encode(), "password": INFLUX_PASSWORD.encode()}


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    with InfluxDB(tmp_path_factory.mktemp("influxdb")) as server:
        t = now()
        server.write([
            f"requests,workload=podinfo,code=200 value=97 {t - 5}",
            f"requests,workload=podinfo,code=500 value=3 {t - 5}",
            f"requests,workload=other,code=200 value=50 {t - 5}",
            f"latency,workload=podinfo value=120.5 {t - 4}",
            f'build,workload=podinfo version="v2" {t - 4}',
        ])
        yield server


def _provider(influx: InfluxDB, *, db: bool = True) -> MetricTemplateProvider:
    address = f"{influx.url}/?db={influx.database}" if db else influx.url
    return MetricTemplateProvider(type="influxdb", address=address)


def test_influxdb_1x_has_no_flux_endpoint(influx: InfluxDB) -> None:
    """The gap: Flagger's Flux goes to /api/v2/query, which this InfluxDB answers with
    404, so a Flux template could only fail here; it is refused at apply instead."""
    r = influx.http.post("/api/v2/query", content=b'from(bucket: "istio")',
                         headers={"Content-Type": "application/vnd.flux"})
    assert r.status_code == 404


def test_an_aggregate_select_answers_one_number(influx: InfluxDB) -> None:
    """The error percentage of a workload, as a Flagger template computes it, with the
    database named in the address's query string."""
    query = ("SELECT sum(\"value\") FROM \"requests\" WHERE \"workload\" = 'podinfo' "
             "AND \"code\" = '500' AND time > now() - 1m")
    provider = InfluxDBProvider()
    assert provider.query(_provider(influx), query, CREDENTIALS) == 3.0
    assert provider.query(_provider(influx), "SELECT last(\"value\") FROM \"latency\" WHERE "
                          "time > now() - 1m", CREDENTIALS) == 120.5


def test_a_fully_qualified_measurement_needs_no_database_in_the_address(
        influx: InfluxDB) -> None:
    query = f'SELECT count("value") FROM "{influx.database}"."autogen"."requests"'
    assert InfluxDBProvider().query(_provider(influx, db=False), query, CREDENTIALS) == 3.0


def test_no_series_is_no_data(influx: InfluxDB) -> None:
    """Nothing matches: no series in the answer, which is no data rather than zero."""
    query = "SELECT sum(\"value\") FROM \"requests\" WHERE \"workload\" = 'absent'"
    assert InfluxDBProvider().query(_provider(influx), query, CREDENTIALS) is None


def test_several_series_or_rows_ask_for_an_aggregate(influx: InfluxDB) -> None:
    provider = InfluxDBProvider()
    with pytest.raises(MetricQueryError, match="returned 2 series"):
        provider.query(_provider(influx), 'SELECT sum("value") FROM "requests" '
                       "WHERE \"workload\" = 'podinfo' GROUP BY \"code\"", CREDENTIALS)
    with pytest.raises(MetricQueryError, match="returned 3 rows"):
        provider.query(_provider(influx), 'SELECT "value" FROM "requests"', CREDENTIALS)


def test_a_value_that_is_not_a_number_fails(influx: InfluxDB) -> None:
    with pytest.raises(MetricQueryError, match="'v2', not a number"):
        InfluxDBProvider().query(_provider(influx), 'SELECT last("version") FROM "build"',
                                 CREDENTIALS)


def test_credentials_are_required_and_checked_by_the_server(influx: InfluxDB) -> None:
    """InfluxDB 1.x with auth-enabled answers 401 without a user or with a wrong
    password; the Secret's username and password are sent as basic auth."""
    provider, query = InfluxDBProvider(), 'SELECT count("value") FROM "requests"'
    with pytest.raises(MetricQueryError, match="influxdb answered 401"):
        provider.query(_provider(influx), query)
    with pytest.raises(MetricQueryError, match="influxdb answered 401"):
        provider.query(_provider(influx), query, {**CREDENTIALS, "password": b"guess"})


def test_a_flagger_influxdb2_secret_is_named_as_such(influx: InfluxDB) -> None:
    """Flagger's Secret holds ``token`` and ``org`` (InfluxDB 2): the check says those
    are not what this provider reads, before any request."""
    with pytest.raises(MetricQueryError, match=r"needs username and password .*org, token"):
        InfluxDBProvider().query(_provider(influx), 'SELECT count("value") FROM "requests"',
                                 {"token": b"t0ken", "org": b"flagger"})


def test_a_query_error_fails_with_influxdb_s_reason(influx: InfluxDB) -> None:
    provider = InfluxDBProvider()
    with pytest.raises(MetricQueryError, match="database not found"):
        provider.query(MetricTemplateProvider(type="influxdb", address=f"{influx.url}?db=nope"),
                       'SELECT count("value") FROM "requests"', CREDENTIALS)


def test_writes_are_never_sent(influx: InfluxDB) -> None:
    """InfluxDB 1.x runs SELECT INTO and DROP sent with GET (with a deprecation warning
    only), so the rendered query is checked before it is sent: a write, or a second
    statement a template variable appended, is refused and the data stays."""
    provider = InfluxDBProvider()
    with pytest.raises(MetricQueryError, match=r"SELECT \.\.\. INTO writes\); not sent"):
        provider.query(_provider(influx), 'SELECT "value" INTO "copy" FROM "requests"',
                       CREDENTIALS)
    with pytest.raises(MetricQueryError, match="more than one statement"):
        provider.query(_provider(influx), 'SELECT count("value") FROM "requests"; '
                       f'DROP DATABASE "{influx.database}"', CREDENTIALS)
    assert provider.query(_provider(influx), 'SELECT count("value") FROM "requests"',
                          CREDENTIALS) == 3.0
    assert not influx.statement('SELECT count("value") FROM "copy"',
                                db=True)["results"][0].get("series")


def test_an_influxdb_template_check_promotes_and_rolls_back(influx: InfluxDB) -> None:
    """A Canary whose one check is an influxdb MetricTemplate (InfluxQL, with Flagger's
    ``{{ target }}`` and ``{{ interval }}``; the user in a secretRef Secret), stepped by
    the rollout controller with the real provider: under 1 % errors is promoted, 5 % is
    rolled back with the check and its value named."""
    h = ProviderHarness({"name": "error-rate", "templateRef": {"name": "influx-errors"},
                         "thresholdRange": {"max": 1}, "interval": "1m"})
    h.cluster.put(template("influx-errors", {"type": "influxdb",
                                             "address": f"{influx.url}/?db={influx.database}",
                                             "secretRef": {"name": "influx-auth"}},
                           "SELECT 100 * sum(\"errors\") / sum(\"requests\") FROM \"rollout\" "
                           "WHERE \"workload\" = '{{ target }}' AND time > now() - "
                           "{{ interval }}"))
    h.cluster.put(secret("influx-auth", {"username": INFLUX_USER, "password": INFLUX_PASSWORD}))
    h.initialize()
    t = now() - 1
    influx.write([f"rollout,workload=podinfo errors=1,requests=200 {t}"])
    good = h.rollout("v2")
    assert good["phase"] == "Succeeded", h.messages()
    assert [(c["name"], c["verdict"], c["value"]) for c in good["checks"]] == [
        ("error-rate", "pass", 0.5)]
    # the same series and time: InfluxDB replaces the point, so the window holds one
    influx.write([f"rollout,workload=podinfo errors=10,requests=200 {t}"])
    bad = h.rollout("v3")
    assert bad["phase"] == "Failed", h.messages()
    failed = [(c["name"], c["value"]) for c in bad["checks"] if c["verdict"] == "fail"]
    assert failed == [("error-rate", 5.0)]
    assert "error-rate" in bad["history"][-1]["reason"]
    assert h.primary_image() == "podinfo:v2"
