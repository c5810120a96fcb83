import pytest

from tests.contacts.helpers import Rig


@pytest.fixture
def rig(transactional_db):
    r = Rig()
    yield r
    r.close()
