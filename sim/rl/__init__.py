"""RL adapters: the Gymnasium environment, an SB3 VecEnv and the reward (one set of defaults)."""
