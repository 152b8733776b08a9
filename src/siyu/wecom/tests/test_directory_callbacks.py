"""change_contact callbacks keep staff and departments in step with the WeCom directory."""

import pytest

from siyu.core.models import Event
from siyu.tenancy.models import Department, Staff
from siyu.testing.factories import StaffFactory, TenantFactory
from siyu.wecom.crypto import WeComCrypto, envelope_xml

TOKEN = "Tok3n"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP = "wwdirectory"


@pytest.fixture
def corp(db):
    return TenantFactory(
        slug="dir-corp",
        wecom_corp_id=CORP,
        wecom_callback_token=TOKEN,
        wecom_callback_aes_key=AES_KEY,
    )


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)

    def send(change_type, created, **fields):
        body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
        xml = (
            f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName>sys</FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType>event</MsgType>"
            f"<Event>change_contact</Event><ChangeType>{change_type}</ChangeType>{body}</xml>"
        )
        message = crypto.encrypt_message(xml)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                f"/wecom/dir-corp/callback?msg_signature={message.msg_signature}"
                f"&timestamp={message.timestamp}&nonce={message.nonce}",
                data=envelope_xml(CORP, message),
                content_type="text/xml",
            )
        assert response.content == b"success"

    return send


def test_departments_and_members_follow_the_directory(corp, deliver):
    deliver("create_party", 100, Id=1, Name="总部", ParentId=0)
    deliver("create_party", 101, Id=2, Name="上海门店", ParentId=1)
    deliver(
        "create_user", 102, UserID="lili", Name="李莉", Department="2,1", MainDepartment=2, Status=1
    )
    staff = Staff.objects.for_tenant(corp).get(wecom_userid="lili")
    assert staff.name == "李莉"
    assert staff.department.name == "上海门店"
    assert staff.department.parent == Department.objects.for_tenant(corp).get(wecom_id=1)
    assert list(staff.roles.values_list("code", flat=True)) == ["sales"]
    assert Event.objects.for_tenant(corp).filter(type="staff.added", staff=staff).count() == 1

    # a rename that carries only UserID/Department keeps the known name
    deliver("update_user", 103, UserID="lili", Department="1")
    staff.refresh_from_db()
    assert staff.name == "李莉" and staff.department.wecom_id == 1

    deliver("delete_user", 104, UserID="lili")
    staff.refresh_from_db()
    assert staff.status == Staff.Status.DEPARTED
    assert Event.objects.for_tenant(corp).filter(type="staff.departed", staff=staff).count() == 1


def test_a_member_who_left_is_departed_and_can_rejoin(corp, deliver):
    staff = StaffFactory(tenant=corp, wecom_userid="wang")
    deliver("update_user", 200, UserID="wang", Status=5)
    staff.refresh_from_db()
    assert staff.status == Staff.Status.DEPARTED
    deliver("update_user", 201, UserID="wang", Status=1)
    staff.refresh_from_db()
    assert staff.status == Staff.Status.ACTIVE
    assert Event.objects.for_tenant(corp).filter(type="staff.rejoined").count() == 1
