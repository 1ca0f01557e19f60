"""meetinglib: the toolkit behind the weekly order-processing review meeting.

The public entry points; everything else lives in the subpackages (see README,
"Architecture"): ``core`` → ``data`` → ``analysis`` → ``report`` → ``meeting``, with the
runner and the command line on top.
"""

from meetinglib._version import __version__
from meetinglib.core.errors import MeetingError
from meetinglib.core.params import Params, load_params
from meetinglib.data.sample import generate_sample
from meetinglib.runner import run_week

__all__ = ["MeetingError", "Params", "__version__", "generate_sample", "load_params", "run_week"]
