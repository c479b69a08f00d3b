"""fireredasr_vllm.quiet: the warning filters handed to spawned engine processes through PYTHONWARNINGS."""

import os
import subprocess
import sys

from fireredasr_vllm.quiet import NOISY_WARNINGS, QUIET

# What the engine processes print (the "%d" filled in), each under the filter of the same index.
EMITTED = ("`torch.distributed.reduce_op` is deprecated, please use `torch.distributed.ReduceOp` instead",
           "resource_tracker: There appear to be 1 leaked shared_memory objects to clean up at shutdown")


def test_spawned_process_accepts_and_applies_the_pythonwarnings_filters():
    assert len(EMITTED) == len(NOISY_WARNINGS)
    emit = "; ".join(f"warnings.warn({message!r}, {category.__name__})"
                     for message, (_, category) in zip(EMITTED, NOISY_WARNINGS))
    child = subprocess.run([sys.executable, "-c", f"import warnings; {emit}; warnings.warn('still shown')"],
                           env={**os.environ, "PYTHONWARNINGS": QUIET["PYTHONWARNINGS"]},
                           capture_output=True, text=True, check=True)
    # A ':' inside a message once split an entry: "Invalid -W option ignored: unknown warning category".
    assert "Invalid -W option" not in child.stderr
    assert "still shown" in child.stderr and not any(message in child.stderr for message in EMITTED)
