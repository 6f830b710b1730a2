"""Independent benchmark jobs in worker processes: same results as a loop, in order, errors surface."""

import pytest

from metalearn_kit.evaluation.parallel import map_in_processes


def _power(base: int, exponent: int) -> int:
    if base < 0:
        raise ValueError("base must be >= 0")
    return base ** exponent


def test_results_match_a_loop_in_the_order_of_the_calls():
    calls = [(2, 3), (3, 2), (5, 1)]
    # the costliest call is submitted first, yet results stay in call order
    assert map_in_processes(_power, calls, jobs=2, cost=lambda args: args[0]) == [8, 9, 5]
    assert map_in_processes(_power, calls, jobs=1) == [8, 9, 5]


def test_a_worker_error_is_raised_and_jobs_is_checked():
    with pytest.raises(ValueError, match="base must be"):
        map_in_processes(_power, [(-1, 2)], jobs=2)
    with pytest.raises(ValueError, match="jobs"):
        map_in_processes(_power, [(1, 2)], jobs=0)


def test_operator_experiments_check_jobs_and_names_before_starting():
    from metalearn_kit.evaluation.operator_experiments import run_operator_experiments

    with pytest.raises(ValueError, match="jobs"):
        run_operator_experiments(["tone_curve"], "fast", jobs=0)
    with pytest.raises(ValueError, match="family must be one of"):
        run_operator_experiments(["no_such_family"], "fast", jobs=2)
