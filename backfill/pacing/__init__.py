"""How fast a job may go: the database's health read (`health`, `probe`), a pure
controller that turns it into a pause and a batch cap (`controller`), and the
worker's side that applies it and shares the verdict on the job's row (`pacer`).
"""
