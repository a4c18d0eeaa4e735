"""Tasks: populations whose basins we know. Importing this package registers the built-ins."""

from training.tasks import (
    digits_backdoor,  # noqa: F401  (registers digits-backdoor)
    icl_regression,  # noqa: F401  (registers icl-regression)
    maze_goal,  # noqa: F401  (registers maze-goal)
    modadd,  # noqa: F401  (registers modadd)
    tiny_lm,  # noqa: F401  (registers tiny-lm)
    xor_cues,  # noqa: F401  (registers xor-cues)
)
from training.tasks.base import (
    DataOrder,
    Task,
    get_task,
    list_tasks,
    register_task,
    task_param_specs,
)

__all__ = ["DataOrder", "Task", "get_task", "list_tasks", "register_task", "task_param_specs"]
