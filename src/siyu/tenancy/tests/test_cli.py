"""The ``siyu`` command: administration without the console, clear errors, exit codes."""

import pytest
from click.testing import CliRunner
from django.contrib.auth import authenticate
from django.db import connection

from siyu.cli import main
from siyu.core.models import AuditEntry
from siyu.tenancy.models import ApiKey, Role, Staff, Tenant
from siyu.tenancy.services import authenticate_api_key

AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"


@pytest.fixture
def siyu(db):
    runner = CliRunner(env={"LC_ALL": "", "LC_MESSAGES": "", "LANG": "en_US.UTF-8"})

    def run(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return run


def test_tenant_add_creates_the_brand_with_its_roles(siyu):
    result = siyu("tenant", "add", "acme", "--name", "Acme 咖啡")
    assert result.exit_code == 0, result.output
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme 咖啡"
    assert Role.objects.for_tenant(tenant).count() == 6
    assert (
        AuditEntry.objects.for_tenant(tenant)
        .filter(action="tenant.created", channel="system")
        .exists()
    )


def test_tenant_secrets_are_encrypted_at_rest_and_listed_masked(siyu):
    result = siyu(
        "tenant",
        "add",
        "acme",
        "--name",
        "Acme",
        "--corp-id",
        "ww1436e0e65a779aee",
        "--secret",
        "contact-secret-value",
        "--callback-token",
        "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
        "--callback-aes-key",
        AES_KEY,
    )
    assert result.exit_code == 0, result.output
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.wecom_callback_aes_key == AES_KEY
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wecom_contact_secret, wecom_callback_token, wecom_callback_aes_key "
            "FROM tenancy_tenant WHERE slug = %s",
            ["acme"],
        )
        stored = cursor.fetchone()
    assert "contact-secret-value" not in stored[0]
    assert "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo" not in stored[1]
    assert AES_KEY not in stored[2]
    assert tenant.masked_secrets()["wecom_callback_aes_key"] == "6qk******hUt"
    listing = siyu("tenant", "list")
    assert "acme\tAcme\tww1436e0e65a779aee\tactive" in listing.output
    assert "contact-secret-value" not in listing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenant", "add", "Bad Slug", "--name", "x"], "Slug must be"),
        (["tenant", "add", "acme", "--name", "  "], "Tenant name is required"),
        (["tenant", "add", "acme", "--name", "x", "--callback-aes-key", "short"], "43 base64"),
        (["tenant", "add", "acme", "--name", "x", "--corp-id", "ww 1"], "corp id"),
        (
            ["staff", "add", "--tenant", "nope", "--userid", "u", "--name", "n"],
            "No tenant with slug 'nope'",
        ),
        (
            [
                "staff",
                "add",
                "--tenant",
                "brand-a",
                "--userid",
                "u",
                "--name",
                "n",
                "--role",
                "boss",
            ],
            "Unknown role(s): boss",
        ),
        (
            ["staff", "add", "--tenant", "brand-a", "--userid", "bad id!", "--name", "n"],
            "WeCom userid must be",
        ),
        (
            ["user", "add", "--tenant", "brand-a", "--staff", "ghost", "--username", "g"],
            "No staff with WeCom userid 'ghost'",
        ),
        (
            ["apikey", "add", "--tenant", "brand-a", "--scopes", "staff:read,root"],
            "Unknown or missing scopes: root",
        ),
        (
            ["apikey", "add", "--tenant", "brand-a", "--expires-days", "0"],
            "expires_in_days must be positive",
        ),
        (
            ["apikey", "revoke", "--tenant", "brand-a", "deadbeef"],
            "No API key with prefix 'deadbeef'",
        ),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(siyu, tenant, args, message):
    result = siyu(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_duplicate_tenant_is_refused(siyu, tenant):
    result = siyu("tenant", "add", "brand-a", "--name", "Again")
    assert result.exit_code == 1
    assert "already exists" in result.output


def test_a_missing_required_option_is_a_usage_error(siyu):
    result = siyu("tenant", "add", "acme")
    assert result.exit_code == 2
    assert "Missing option '--name'" in result.output


def test_staff_user_and_api_key_from_the_command_line(siyu, tenant):
    # given a staff member added with a department
    result = siyu(
        "staff",
        "add",
        "--tenant",
        "brand-a",
        "--userid",
        "lili",
        "--name",
        "李莉",
        "--role",
        "sales",
        "--role",
        "content",
        "--department",
        "上海门店",
    )
    assert result.exit_code == 0, result.output
    staff = Staff.objects.for_tenant(tenant).get(wecom_userid="lili")
    assert staff.department.name == "上海门店"
    assert sorted(staff.roles.values_list("code", flat=True)) == ["content", "sales"]
    # when they get a console login with a generated password
    result = siyu("user", "add", "--tenant", "brand-a", "--staff", "lili", "--username", "lili")
    assert result.exit_code == 0, result.output
    password = result.output.split("Password: ")[1].strip()
    # then they can log in
    staff.refresh_from_db()
    assert authenticate(username="lili", password=password) == staff.user
    # and an API key printed once authenticates, is stored hashed and can be revoked
    result = siyu("apikey", "add", "--tenant", "brand-a", "--scopes", "staff:read,events:read")
    assert result.exit_code == 0, result.output
    raw_key = result.output.strip().splitlines()[-1]
    key = authenticate_api_key(raw_key)
    assert key is not None and key.scopes == ["staff:read", "events:read"]
    assert raw_key not in str(list(ApiKey.objects.for_tenant(tenant).values()))
    assert siyu("apikey", "revoke", "--tenant", "brand-a", key.prefix).exit_code == 0
    assert authenticate_api_key(raw_key) is None


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "zh_CN.UTF-8"}, "zh-hans"),
        ({"LANG": "zh_TW.UTF-8"}, "zh-hans"),
        ({"LC_ALL": "en_GB.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"),
        ({"LANG": "C.UTF-8"}, "zh-hans"),
        ({"LANG": "de_DE.UTF-8"}, "zh-hans"),
        ({}, "zh-hans"),
    ],
)
def test_the_cli_speaks_the_shells_language_when_it_can(environ, language):
    from siyu.cli import cli_language

    assert cli_language(environ) == language


def test_cli_errors_come_in_chinese_under_a_chinese_locale(db, tenant):
    runner = CliRunner(env={"LC_ALL": "", "LC_MESSAGES": "", "LANG": "zh_CN.UTF-8"})
    result = runner.invoke(main, ["tenant", "add", "brand-a", "--name", "Again"])
    assert result.exit_code != 0
    assert "已存在" in result.output
