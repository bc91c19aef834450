"""Plain functions the routes, tasks and CLI all call; they never touch `request`."""
