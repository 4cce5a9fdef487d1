import { eachLimited } from '../../server/concurrency';

const tick = () => new Promise((r) => setTimeout(r, 1));

describe('running independent work a few at a time', () => {
  it('runs every item, never more than the limit at once', async () => {
    let running = 0;
    let most = 0;
    const done: number[] = [];
    await eachLimited([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running++;
      most = Math.max(most, running);
      await tick();
      done.push(n);
      running--;
    });
    expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(most).toBe(3);
  });

  it('rejects with the first failure and starts nothing after it', async () => {
    const started: number[] = [];
    await expect(
      eachLimited([1, 2, 3, 4, 5], 2, async (n) => {
        started.push(n);
        await tick();
        if (n === 2) throw new Error('two failed');
      }),
    ).rejects.toThrow('two failed');
    expect(started).not.toContain(5);
  });

  it('resolves at once for no items', async () => {
    await expect(eachLimited([], 4, async () => undefined)).resolves.toBeUndefined();
  });
});
