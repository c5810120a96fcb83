import pytest
from django.core.exceptions import ValidationError

from balise.people.actions import add_contact


def test_a_sixth_contact_is_refused(world):
    with pytest.raises(ValidationError) as exc:
        add_contact(world.person, name="Sixième", phone="+33612345699")
    assert "5" in str(exc.value)
    assert world.person.contacts.count() == 5


@pytest.mark.parametrize("phone", ["12", "+33 1", "not a phone", "+999123456789", ""])
def test_invalid_phone_numbers_are_refused(db, phone):
    from tests.personas import make_world

    w = make_world("nice", contacts=2)
    with pytest.raises(ValidationError) as exc:
        add_contact(w.person, name="Invalide", phone=phone)
    assert "phone" in exc.value.message_dict
    assert w.person.contacts.count() == 2


def test_numbers_are_stored_in_e164(db):
    from tests.personas import make_world

    w = make_world("nice", contacts=2)
    c = add_contact(w.person, name="Nadia", phone="06 98 76 54 32")
    assert c.phone == "+33698765432" and c.position == 3 and c.consent == "pending"
    with pytest.raises(ValidationError):
        add_contact(w.person, name="Doublon", phone="+33698765432")
