"""Model factories that fail (used by the runner's failure tests)."""


def broken_factory(train_X, train_Y):
    raise RuntimeError("this model always fails")


def dying_factory(train_X, train_Y):
    """Kill this process, as the out-of-memory killer would; once only if $GPVI_TEST_DIE_ONCE names a file."""
    import os
    import signal
    from pathlib import Path

    marker = os.environ.get("GPVI_TEST_DIE_ONCE")
    if marker is not None:
        if Path(marker).exists():
            import torch
            from botorch.models import SingleTaskGP
            from botorch.models.transforms import Normalize

            torch.set_default_dtype(torch.float64)  # BoTorch's priors take it: as under pytest's conftest
            return SingleTaskGP(train_X, train_Y, input_transform=Normalize(train_X.shape[-1]))
        Path(marker).touch()
    os.kill(os.getpid(), signal.SIGKILL)
