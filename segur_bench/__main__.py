from .cli import run

# Guarded: worker processes (spawned by uvicorn) re-import the main module.
if __name__ == "__main__":
    run()
