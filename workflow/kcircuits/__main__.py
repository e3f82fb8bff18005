"""`python -m kcircuits ...`; without arguments inside a torchrun launch, the launched command."""
import sys

from .cli import main
from .train.launch import launched_argv

sys.exit(main(sys.argv[1:] or launched_argv()))
