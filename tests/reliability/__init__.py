import os

# ``pytest --thorough`` (tests/conftest.py) or OPENIMPACT_FUZZ_THOROUGH=1: fuzz
# and stress for far longer than CI can afford on every push.
THOROUGH = os.environ.get("OPENIMPACT_FUZZ_THOROUGH", "") == "1"
