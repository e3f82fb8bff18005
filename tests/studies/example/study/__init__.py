"""An example study: each training seed's recall at its last checkpoint, by knowledge type and attribute.

The smallest complete study, kept under the tests (tests/studies/example/test_example_study.py drops
it into workflow/kcircuits/studies/example/ of a copy of the repository, without editing a core
file, and checks that the registry, the CLI, the config and the workflow take it up). To add a study,
copy this folder and see docs/adding-a-study.md.
"""
from .. import Study

STUDY = Study(
    name="example",
    title="Example: final recall",
    package=__name__,
    sections={"example": ["example"]},  # the settings stage of its command and figure
    check=".checks:check",
    stages=(".stage",),
    figures=".figures",
    findings={"example": ".summary:markdown"},
    place=90,
)
