"""inferq's Python client, in a few lines: one image, a job of several, many at once with the
async client, and a batch of a folder.

    export INFERQ_API_KEY=$(cat .run/dev_key)   # make run's development key
    python examples/client_example.py
"""
import asyncio
from pathlib import Path

from inferq import AsyncClient, Client, InferqError

EXAMPLES = Path(__file__).resolve().parent
IMAGES = [EXAMPLES / name for name in ("circle.png", "square.png", "triangle.jpg")]


def main():
    with Client() as client:  # INFERQ_URL (default http://localhost:8000), INFERQ_API_KEY
        # One image: submitted with `Prefer: wait`, its top-k list back.
        best = client.predict("shapes", IMAGES[0])[0]
        print(f"{IMAGES[0].name}: {best['label']} ({best['score']:.3f})")

        # A job of several images, then waited for.
        job = client.submit("shapes", IMAGES).wait(timeout=30)
        print(f"job {job.id}: {job.status},",
              [out["top_k"][0]["label"] for out in job.outputs])

        # A bad input is a typed error with the server's code and message.
        try:
            client.predict("shapes", b"not an image")
        except InferqError as exc:
            print(f"refused: {exc.code}: {exc.message}")

        # A folder as a batch (sent as a tar made on the fly); every file is an input.
        batch = client.batches.create("shapes", EXAMPLES)
        batch = client.batches.wait(batch["id"], timeout=120)
        print(f"batch {batch['id']}: {batch['status']}, {batch['request_counts']}")
        for line in client.batches.errors(batch["id"]):
            print(f"  {line['custom_id']}: {line['error']['code']}")  # this script, say

    asyncio.run(many())


async def many():
    # The async twin: 30 images in flight at once from one event loop.
    async with AsyncClient() as client:
        results = await asyncio.gather(*(client.predict("shapes", IMAGES[i % 3])
                                         for i in range(30)))
    print(f"{len(results)} predictions:", sorted({r[0]["label"] for r in results}))


if __name__ == "__main__":
    main()
