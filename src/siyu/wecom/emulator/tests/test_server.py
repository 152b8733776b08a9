"""The emulator over real HTTP (uvicorn in a thread): concurrency, the control client, state."""

import json
import threading

import httpx

from siyu.wecom.emulator import EmulatorControl, EmulatorServer, World
from siyu.wecom.emulator.server import EmulatorControlError, run_emulator
from siyu.wecom.emulator.tests.support import AES_KEY, CONTACT_SECRET, CORP_ID, STAFF, TOKEN


def test_concurrent_scans_and_reads_over_http(tmp_path):
    path = tmp_path / "emulator.json"
    with EmulatorServer(World(path=path, seed="http", save_delay=0.05)) as server:
        control = EmulatorControl(server.base_url)
        control.setup_corp(
            CORP_ID,
            contact_secret=CONTACT_SECRET,
            token=TOKEN,
            encoding_aes_key=AES_KEY,
            staff=STAFF,
        )
        with httpx.Client(base_url=server.base_url) as client:
            token = client.get(
                "/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": CONTACT_SECRET}
            ).json()["access_token"]
            way = client.post(
                "/cgi-bin/externalcontact/add_contact_way",
                params={"access_token": token},
                json={"type": 2, "scene": 2, "user": ["zhangsan", "lisi", "wangwu"]},
            ).json()
            assert way["qr_code"].startswith(server.base_url)
            errors = []

            def scanner():
                try:
                    with EmulatorControl(server.base_url) as own:
                        for _ in range(20):
                            own.scan(qr_code=way["qr_code"])
                except Exception as error:  # pragma: no cover - reported below
                    errors.append(error)

            def reader():
                try:
                    for _ in range(20):
                        answer = client.post(
                            "/cgi-bin/externalcontact/batch/get_by_user",
                            params={"access_token": token},
                            json={"userid_list": ["zhangsan", "lisi", "wangwu"], "limit": 100},
                        ).json()
                        assert answer["errcode"] == 0
                except Exception as error:  # pragma: no cover - reported below
                    errors.append(error)

            threads = [threading.Thread(target=scanner) for _ in range(4)]
            threads += [threading.Thread(target=reader) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            counts = [
                len(
                    client.get(
                        "/cgi-bin/externalcontact/list",
                        params={"access_token": token, "userid": userid},
                    ).json()["external_userid"]
                )
                for userid in ("zhangsan", "lisi", "wangwu")
            ]
            assert sorted(counts) == [26, 27, 27]
        control.close()
    saved = json.loads(path.read_text())
    assert len(saved["corps"][CORP_ID]["customers"]) == 80


def test_control_errors_are_raised_with_their_status(corp, control):
    try:
        control.scan("0" * 32)
    except EmulatorControlError as error:
        assert (error.status, error.message) == (404, "no contact way '" + "0" * 32 + "'")
    else:  # pragma: no cover
        raise AssertionError("expected an error")


def test_run_emulator_signature():
    import inspect

    parameters = inspect.signature(run_emulator).parameters
    assert list(parameters)[:4] == ["host", "port", "state_path", "seed"]
    assert parameters["port"].default == 8081
