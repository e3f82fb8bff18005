"""`python -m kcircuits ...`: in the run's worker when there is one (kcircuits.worker), else here;
without arguments inside a torchrun launch, the launched command."""
import sys

from .worker import run_job

code = run_job(sys.argv[1:])
if code is None:
    from .cli import main
    from .train.launch import launched_argv

    code = main(sys.argv[1:] or launched_argv())
sys.exit(code)
