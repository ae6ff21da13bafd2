"""AdaFocus (V1): a reinforcement-learning patch policy (PPO) and the staged training that uses it."""
