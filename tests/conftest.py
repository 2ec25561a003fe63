# SPDX-License-Identifier: Apache-2.0
import pytest
import torch

from physicsnemo_climax.models import ClimaX

#: The fault suite's fixtures (store, trained run, copies to damage): ``tests/faults.py``;
#: the local server of weights by name (``server``): ``tests/hub_server.py``.
pytest_plugins = ("faults", "hub_server")

TINY_VARS = ["t2m", "u10", "v10", "z500", "t850", "q700"]


def tiny_climax(**overrides) -> ClimaX:
    """A small ClimaX for fast tests; dropout off so outputs are deterministic."""
    args = dict(
        variables=TINY_VARS,
        img_size=(16, 32),
        patch_size=2,
        embed_dim=64,
        depth=2,
        decoder_depth=2,
        num_heads=4,
        drop_path=0.0,
        drop_rate=0.0,
    )
    args.update(overrides)
    return ClimaX(**args)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return tiny_climax().eval()


@pytest.fixture(autouse=True)
def fresh_compile_caches():
    """Each test starts with empty torch.compile caches. PhysicsNeMo's patched samplers compile a
    helper on first use; a second grid in the same process makes dynamo recompile it with dynamic
    shapes, which this torch's Inductor fails on ('StrictLessThan' object has no attribute 'diff')."""
    yield
    torch._dynamo.reset()
