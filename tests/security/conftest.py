from tests.hub.conftest import *  # noqa
