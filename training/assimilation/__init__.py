"""Strong-constraint 4D-Var with the emulator's adjoint."""
