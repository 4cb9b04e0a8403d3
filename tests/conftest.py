"""Every test sees its own `testbed use` setting: the user's current lab must not pick the lab a test acts on."""

import os
import tempfile

os.environ["TESTBED_CONFIG_DIR"] = tempfile.mkdtemp(prefix="testbed-config-")
