"""Fixtures shared by the explanation tests."""
import pytest
import torch
import torchvision

from utils.train import load_or_train


@pytest.fixture(scope="session")
def model():
    """The default course model (from data/models/, trained there if missing)."""
    return load_or_train("default", seed=0, progress=False)[0]


@pytest.fixture(scope="session")
def resnet():
    """An untrained torchvision ResNet-18 with two classes: a second, standard architecture."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=2).eval()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``), so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
