"""Connection settings: defaults per provider, inference, and a SettingsError naming the variable to fix."""

from __future__ import annotations

import pytest

from oneroster_pipeline.client.settings import ConnectionSettings, Secret, SettingsError

IC_BASE = "https://district.infinitecampus.org/campus/api/ims/oneroster/rostering/v1p2"
IC_TOKEN = "https://district.infinitecampus.org/campus/oauth2/token?appName=district"
CREDS = {"client_id": "id", "client_secret": "very-secret-value"}


def settings(**env: str) -> ConnectionSettings:
    return ConnectionSettings.from_env({f"ONEROSTER_{k.upper()}": v for k, v in env.items()})


def error_of(**env: str) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        settings(**env)
    return info.value


def test_empty_environment_is_the_demo_provider_waiting_to_be_started():
    s = ConnectionSettings.from_env({})
    assert (s.provider, s.base_url, s.auth, s.needs_demo_provider) == ("demo", None, "oauth2", True)
    started = s.with_overrides(base_url="http://127.0.0.1:9/ims/oneroster/rostering/v1p2",
                               token_url="http://127.0.0.1:9/oauth2/token", client_id="c", client_secret="s")
    assert (started.version, started.needs_demo_provider) == ("1.2", False)
    assert isinstance(started.client_secret, Secret) and started.client_secret.reveal() == "s"


@pytest.mark.parametrize(("path", "version"), [("/ims/oneroster/v1p1", "1.1"),
                                               ("/ims/oneroster/rostering/v1p2/", "1.2")])
def test_version_is_inferred_from_the_base_path(path, version):
    s = settings(provider="oneroster", base_url="https://sis.example.org" + path, auth="none")
    assert s.version == version and not s.base_url.endswith("/")


def test_contradictory_or_missing_version_names_the_variable():
    error = error_of(provider="oneroster", base_url="https://h/ims/oneroster/v1p1", version="1.2", auth="none")
    assert error.variable == "ONEROSTER_VERSION" and "ONEROSTER_BASE_URL" in str(error)
    missing = error_of(provider="oneroster", base_url="https://h/api", auth="none")  # issue 26 item 4: the URL lacks its path
    assert missing.variable == "ONEROSTER_BASE_URL" and "/ims/oneroster/v1p1" in str(missing)
    assert error_of(provider="oneroster", base_url="https://h/api", version="2.0",
                    auth="none").variable == "ONEROSTER_VERSION"
    assert settings(provider="oneroster", base_url="https://h/api", version="1.1", auth="none").version == "1.1"


@pytest.mark.parametrize(("env", "variable"), [
    ({"provider": "powerschool"}, "ONEROSTER_PROVIDER"),
    ({"provider": "oneroster"}, "ONEROSTER_BASE_URL"),
    ({"provider": "oneroster", "base_url": "ftp://h/v1p2", "auth": "none"}, "ONEROSTER_BASE_URL"),
    ({"provider": "oneroster", "base_url": "https://h/v1p2?x=1", "auth": "none"}, "ONEROSTER_BASE_URL"),
    ({"provider": "oneroster", "base_url": "https://h/v1p2", "auth": "kerberos"}, "ONEROSTER_AUTH"),
    ({"provider": "oneroster", "base_url": "https://h/v1p2", "client_id": "i", "client_secret": "s"},
     "ONEROSTER_TOKEN_URL"),
    ({"provider": "oneroster", "base_url": "https://h/v1p2", "token_url": "https://h/token", "client_id": "i"},
     "ONEROSTER_CLIENT_SECRET"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "oauth1", "client_secret": "s"},
     "ONEROSTER_CLIENT_ID"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "bearer"}, "ONEROSTER_ACCESS_TOKEN"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "oauth1", "client_id": "i",
      "client_secret": "s", "access_token": "t"}, "ONEROSTER_ACCESS_TOKEN"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "none", "token_url": "https://h/t"},
     "ONEROSTER_TOKEN_URL"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "none", "page_size": "lots"},
     "ONEROSTER_PAGE_SIZE"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "none", "page_size": "0"},
     "ONEROSTER_PAGE_SIZE"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "none", "timeout_seconds": "0"},
     "ONEROSTER_TIMEOUT_SECONDS"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "none", "max_retries": "-1"},
     "ONEROSTER_MAX_RETRIES"),
    ({"provider": "oneroster", "base_url": "https://h/v1p1", "auth": "oauth1", "client_id": "i",
      "client_secret": "s", "oauth1_signature_method": "PLAINTEXT"}, "ONEROSTER_OAUTH1_SIGNATURE_METHOD"),
    ({"provider": "csv"}, "ONEROSTER_CSV_PATH"),
])
def test_bad_settings_name_their_variable(env, variable):
    error = error_of(**env)
    assert error.variable == variable and str(error).startswith(variable)


def test_infinite_campus_profile():
    s = settings(provider="infinite_campus", base_url=IC_BASE, token_url=IC_TOKEN, **CREDS)
    assert (s.auth, s.version, s.page_size) == ("oauth2", "1.2", 1000)
    creds = CREDS
    assert settings(provider="infinite_campus", base_url=IC_BASE, token_url=IC_TOKEN, page_size="50000",
                    **creds).page_size == 50_000
    too_big = error_of(provider="infinite_campus", base_url=IC_BASE, token_url=IC_TOKEN, page_size="50001", **creds)
    assert too_big.variable == "ONEROSTER_PAGE_SIZE" and "50000" in str(too_big)
    no_app = error_of(provider="infinite_campus", base_url=IC_BASE, token_url=IC_TOKEN.split("?")[0], **creds)
    assert no_app.variable == "ONEROSTER_TOKEN_URL" and "appName" in str(no_app)
    empty_app = error_of(provider="infinite_campus", base_url=IC_BASE, token_url=IC_TOKEN.split("=")[0] + "=",
                         **creds)
    assert empty_app.variable == "ONEROSTER_TOKEN_URL"
    missing = error_of(provider="infinite_campus", base_url=IC_BASE, **creds)
    assert missing.variable == "ONEROSTER_TOKEN_URL"
    assert "https://district.infinitecampus.org/campus/oauth2/token?appName=<appName>" in str(missing)
    retired = error_of(provider="infinite_campus", base_url=IC_BASE, auth="oauth1", **creds)
    assert retired.variable == "ONEROSTER_AUTH" and "oauth2" in str(retired)


def test_classlink_profile_oauth1_direct_or_bearer_through_the_proxy():
    direct = settings(provider="classlink", base_url="https://d.oneroster.com/ims/oneroster/v1p1",
                      client_id="key", client_secret="secret")
    assert (direct.auth, direct.oauth1_signature_method) == ("oauth1", "HMAC-SHA256")
    proxy = settings(provider="classlink", base_url="https://proxy.example/app/ims/oneroster/v1p1",
                     access_token="long-lived")
    assert proxy.auth == "bearer"
    sha1 = settings(provider="classlink", base_url="https://d/ims/oneroster/v1p1", client_id="k", client_secret="s",
                    oauth1_signature_method="hmac-sha1")
    assert sha1.oauth1_signature_method == "HMAC-SHA1"
    assert error_of(provider="classlink", base_url="https://d/ims/oneroster/v1p1", auth="oauth2").variable == \
        "ONEROSTER_AUTH"


def test_csv_provider_needs_only_a_path():
    s = settings(provider="csv", csv_path="/data/export")
    assert (s.auth, s.is_rest, s.connection_label()) == ("none", False, "csv /data/export")


def test_blank_values_count_as_unset():
    s = settings(provider="oneroster", base_url="https://h/ims/oneroster/v1p1", auth="none", page_size=" ",
                 version="")
    assert (s.page_size, s.version) == (1000, "1.1")


def test_secrets_never_appear_in_repr_str_or_errors():
    secret = "very-secret-value"
    s = settings(provider="oneroster", base_url="https://h/ims/oneroster/v1p2", token_url="https://h/token", **CREDS)
    assert secret not in repr(s) and secret not in str(s) and "Secret('********')" in repr(s)
    assert s.client_secret.reveal() == secret
    bearer = settings(provider="oneroster", base_url="https://h/ims/oneroster/v1p2", access_token=secret)
    assert bearer.auth == "bearer" and secret not in repr(bearer)
    with_password = error_of(provider="oneroster", base_url=f"https://user:{secret}@h/ims/oneroster/v1p2",
                             auth="none")
    assert with_password.variable == "ONEROSTER_BASE_URL" and secret not in str(with_password)
    contradiction = error_of(provider="oneroster", base_url="https://h/v1p1", auth="oauth1", client_id="i",
                             client_secret="s", access_token=secret)
    assert secret not in str(contradiction)


def test_connection_label_has_no_credentials():
    s = settings(provider="classlink", base_url="https://d.example.org:8443/ims/oneroster/v1p1", client_id="key",
                 client_secret="hush")
    assert s.connection_label() == "classlink https://d.example.org:8443/ims/oneroster/v1p1 (OneRoster 1.1)"
    assert "hush" not in s.connection_label() and "key" not in s.connection_label()


def test_with_overrides_revalidates():
    s = settings(provider="oneroster", base_url="https://h/ims/oneroster/v1p1", auth="none")
    assert s.with_overrides(page_size=5).page_size == 5
    with pytest.raises(SettingsError) as info:
        s.with_overrides(max_concurrency=50)
    assert info.value.variable == "ONEROSTER_MAX_CONCURRENCY"
    with pytest.raises(SettingsError):
        s.with_overrides(version="1.2")  # contradicts /v1p1
