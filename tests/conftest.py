"""Fixtures shared by the explanation tests."""
import pytest
import torch
import torchvision

from utils.models import load_shipped


@pytest.fixture(scope="session")
def model():
    """The shipped default course model (models/default_seed0.pt), what notebooks 01-04 explain."""
    return load_shipped()[0]


@pytest.fixture(scope="session")
def resnet():
    """An untrained torchvision ResNet-18 with two classes: a second, standard architecture."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=2).eval()


@pytest.fixture(scope="session")
def net():
    """The ImageNet EfficientNet-Lite0 of utils.photos (the real network), loaded once."""
    from utils import photos
    return photos.load_network()


@pytest.fixture(scope="session")
def cat():
    """scikit-image's cat Chelsea at 224 × 224, as a batch of one: [1, 3, 224, 224]."""
    from utils import photos
    return photos.photo("chelsea")[None]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``), so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
