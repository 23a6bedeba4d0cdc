"""A model factory that always fails (used by the runner's failure test)."""


def broken_factory(train_X, train_Y):
    raise RuntimeError("this model always fails")
