def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "docker_recipe: replays docker/Dockerfile in a fresh virtual environment "
        "(slow, runs only with HARMA_TEST_DOCKER_RECIPE=1)",
    )
