"""Synthetic people are a pure function of (seed, index)."""

from siyu.simulator.population import (
    CITIES,
    FEMALE_GIVEN,
    INTERESTS,
    MALE_GIVEN,
    NICKNAMES,
    PERSONAS,
    SURNAMES,
    Population,
)


def test_the_same_seed_and_index_give_the_same_person_in_any_order():
    # given
    forward = Population(seed=42).people(0, 50)
    # when
    backward = [Population(seed=42).person(i) for i in reversed(range(50))][::-1]
    # then
    assert forward == backward


def test_another_seed_gives_other_people():
    assert Population(seed=1).people(0, 20) != Population(seed=2).people(0, 20)


def test_people_are_built_from_the_fixed_lists():
    for person in Population(seed="names").people(0, 300):
        surname = next(
            s for s in sorted(SURNAMES, key=len, reverse=True) if person.real_name.startswith(s)
        )
        given = person.real_name[len(surname) :]
        assert 1 <= len(given) <= 2
        assert set(given) <= set(FEMALE_GIVEN if person.gender == 2 else MALE_GIVEN)
        assert person.name in (person.real_name, *NICKNAMES)
        assert person.gender in (1, 2)
        assert 18 <= person.age <= 60
        assert person.city in {city for city, _ in CITIES}
        assert 1 <= len(person.interests) <= 3 and set(person.interests) <= set(INTERESTS)
        month, day = map(int, person.birthday.split("-"))
        assert 1 <= month <= 12 and 1 <= day <= 31
        assert person.persona in PERSONAS
        assert person.customer_fields() == {"name": person.name, "gender": person.gender}


def test_personas_keep_the_rates_population_averages():
    total = sum(p.weight for p in PERSONAS)
    assert abs(total - 1.0) < 1e-9
    for behaviour in ("chat", "group_message", "join_group", "leave_group", "delete_staff"):
        mean = sum(p.weight * p.factor(behaviour) for p in PERSONAS)
        assert 0.8 <= mean <= 1.25, behaviour
