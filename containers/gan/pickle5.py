"""`pickle5` for the unchanged create_cif.py: the standard library's pickle (Python >= 3.8).

pickle5 backports Python 3.8's pickle (protocol 5, PEP 574) to 3.5-3.7 and does not install on
3.8+, where the standard library already is that module. Installed into the image's site-packages.
"""

from pickle import *  # noqa: F403 - the whole public interface, as pickle5 offers it
from pickle import PickleBuffer, dump, dumps, load, loads  # noqa: F401 - named for readers and linters
