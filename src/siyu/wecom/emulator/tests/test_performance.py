"""A full customer sync of a sizeable corp through batch/get_by_user stays quick."""

import time

from siyu.wecom.emulator.physics import new_customer
from siyu.wecom.emulator.state import Follow

STAFF_COUNT = 20
CUSTOMERS = 10_000


def test_a_full_sync_of_10000_customers_of_20_staff_is_quick(api, control, world):
    # given 20 members and 10 000 customers, each followed by 1 or 2 members
    for i in range(STAFF_COUNT):
        control.add_staff(f"guide{i:02d}", f"导购{i}", silent=True)
    userids = [f"guide{i:02d}" for i in range(STAFF_COUNT)]
    expected = set()
    with world.lock:
        corp = world.corps["wwtestcorp0000001"]
        for n in range(CUSTOMERS):
            customer = new_customer(world, corp, {"name": f"客户{n}"})
            for userid in {userids[n % STAFF_COUNT], userids[(n * 7) % STAFF_COUNT]}:
                corp.add_follow(customer, Follow(userid=userid, createtime=world.now(), add_way=1))
                expected.add((userid, customer.external_userid))
    # when the platform syncs everything, 100 at a time
    started = time.monotonic()
    seen, cursor, calls = [], "", 0
    while True:
        answer = api.ok(
            "externalcontact/batch/get_by_user",
            {"userid_list": userids, "cursor": cursor, "limit": 100},
        )
        calls += 1
        seen += [
            (item["follow_info"]["userid"], item["external_contact"]["external_userid"])
            for item in answer["external_contact_list"]
        ]
        cursor = answer["next_cursor"]
        if not cursor:
            break
    elapsed = time.monotonic() - started
    # then every follow came exactly once, in few calls, fast
    assert len(seen) == len(expected)
    assert set(seen) == expected
    assert calls == -(-len(expected) // 100)
    assert elapsed < 10, f"sync took {elapsed:.1f}s"
