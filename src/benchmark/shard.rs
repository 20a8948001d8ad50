//! Shards: a run cut into N parts that separate processes (array tasks of a cluster's
//! scheduler, or GPUs of one machine) score independently into one results folder. Which
//! shard a process is comes from `--shard K/N` or from the scheduler's environment; which
//! units a shard scores is a pure function of the units' expected costs, so every machine
//! computes the same assignment for the same configuration.

use std::fmt;

use anyhow::{bail, Context, Result};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 {
            bail!("a run has at least one shard (N in K/N is 0)");
        }
        if index >= count {
            bail!(
                "shard {index} of {count} does not exist: shards are numbered 0 to {} (K/N is \
                 0-based)",
                count - 1
            );
        }
        Ok(Self { index, count })
    }

    /// `K/N`, as `--shard` takes it.
    pub fn parse(text: &str) -> Result<Self> {
        let (index, count) = text
            .split_once('/')
            .with_context(|| format!("--shard {text}: give K/N (e.g. 0/4) or auto"))?;
        let number = |part: &str, what: &str| {
            part.trim()
                .parse::<usize>()
                .with_context(|| format!("--shard {text}: {what} '{part}' is not a number"))
        };
        Self::new(number(index, "K")?, number(count, "N")?)
    }

    /// A name for files of this shard: `shard-K-of-N`.
    pub fn file_stem(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// Which of `costs` (one per unit, in the plan's order) this shard scores: the units are
    /// dealt heaviest first, each to the shard with the least cost so far (lowest index on a
    /// tie; units of equal cost in plan order), which keeps the shards' costs within one unit
    /// of each other and depends on nothing but the costs.
    pub fn select(&self, costs: &[u64]) -> Vec<usize> {
        let owners = assign(costs, self.count);
        (0..costs.len())
            .filter(|&unit| owners[unit] == self.index)
            .collect()
    }
}

/// The shard of each unit (see [`Shard::select`]).
pub fn assign(costs: &[u64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].cmp(&costs[a]).then(a.cmp(&b)));
    let mut loads = vec![0u64; count];
    let mut owners = vec![0usize; costs.len()];
    for unit in order {
        let lightest = (0..count)
            .min_by_key(|&shard| (loads[shard], shard))
            .expect("at least one shard");
        loads[lightest] += costs[unit];
        owners[unit] = lightest;
    }
    owners
}

/// Which shard this process is, from the scheduler that started it: a Slurm job array task
/// (`SLURM_ARRAY_TASK_ID` among `SLURM_ARRAY_TASK_MIN`, `_MAX`, `_COUNT` and `_STEP`) or a
/// Kubernetes Indexed Job's pod (`JOB_COMPLETION_INDEX`, with the shard count from `shards` —
/// `--shards N` — or else `VALUELENS_SHARDS`). `env` looks a variable up.
pub fn from_scheduler(
    env: impl Fn(&str) -> Option<String>,
    shards: Option<usize>,
) -> Result<Shard> {
    let number = |name: &str| -> Result<Option<usize>> {
        match env(name) {
            None => Ok(None),
            Some(text) if text.trim().is_empty() => Ok(None),
            Some(text) => text
                .trim()
                .parse::<usize>()
                .map(Some)
                .with_context(|| format!("{name}={text} is not a whole number")),
        }
    };
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        return slurm_shard(id, &number, shards);
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = match shards {
            Some(count) => count,
            None => number("VALUELENS_SHARDS")?.with_context(|| {
                format!(
                    "JOB_COMPLETION_INDEX={index} says which shard this pod is, not how many there \
                     are: give --shards N (the Job's completions) or set VALUELENS_SHARDS"
                )
            })?,
        };
        return Shard::new(index, count)
            .with_context(|| format!("JOB_COMPLETION_INDEX={index} with {count} shards"));
    }
    bail!(
        "--shard auto found no scheduler's index: neither SLURM_ARRAY_TASK_ID (a Slurm job array \
         task) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; give --shard K/N"
    )
}

/// The task's rank among the array's indices. Slurm passes the smallest and largest index, how
/// many there are and a step, which is the real one for `MIN-MAX:STEP` arrays but 1 for an
/// array given as a list (`--array=1,3,5,7`, seen with Slurm 22.05). A list whose indices are
/// evenly spaced (`MIN + (COUNT-1)·STEP = MAX`) gives the rank all the same; an uneven one
/// (`1,2,7`) cannot be ranked from the environment, and its tasks off the even grid are refused.
fn slurm_shard(
    id: usize,
    number: &dyn Fn(&str) -> Result<Option<usize>>,
    shards: Option<usize>,
) -> Result<Shard> {
    let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
    let max = number("SLURM_ARRAY_TASK_MAX")?;
    let count = match number("SLURM_ARRAY_TASK_COUNT")? {
        Some(count) => count,
        None => match max {
            Some(max) if max >= min => max - min + 1,
            _ => bail!(
                "SLURM_ARRAY_TASK_ID={id} is set but neither SLURM_ARRAY_TASK_COUNT nor \
                 SLURM_ARRAY_TASK_MAX: give --shard K/N"
            ),
        },
    };
    let max = max.unwrap_or(min + count.saturating_sub(1));
    if count == 0 || id < min || id > max {
        bail!("SLURM_ARRAY_TASK_ID={id} is outside the array's indices {min}–{max}");
    }
    let spans = |step: usize| min + (count - 1) * step == max;
    let step = match count {
        1 => 1,
        _ => match number("SLURM_ARRAY_TASK_STEP")? {
            Some(step) if step > 0 && spans(step) => step,
            _ => (max - min) / (count - 1),
        },
    };
    let even = step > 0 && spans(step) && (id - min).is_multiple_of(step);
    if !even {
        bail!(
            "the array's {count} indices from {min} to {max} are not evenly spaced, so task {id}'s \
             rank among them is unknown: submit the array as --array=MIN-MAX[:STEP] or as an \
             evenly spaced list, or give --shard K/N"
        );
    }
    let shard = Shard::new((id - min) / step, count)?;
    if let Some(asked) = shards {
        if asked != count {
            bail!("--shards {asked} disagrees with the Slurm array's {count} tasks");
        }
    }
    Ok(shard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn parses_k_of_n_and_refuses_what_is_not() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        for bad in ["3/3", "1/0", "1", "a/3", "1/b", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert!(Shard::parse("3/3")
            .unwrap_err()
            .to_string()
            .contains("0 to 2"));
    }

    #[test]
    fn every_unit_goes_to_exactly_one_shard_and_loads_stay_within_one_unit() {
        let costs: Vec<u64> = (0..97u64).map(|i| (i * 7919) % 1000 + 1).collect();
        for count in 1..=8 {
            let owners = assign(&costs, count);
            let mut seen = vec![0; costs.len()];
            let mut loads = vec![0u64; count];
            for (index, load) in loads.iter_mut().enumerate() {
                for unit in Shard::new(index, count).unwrap().select(&costs) {
                    seen[unit] += 1;
                    *load += costs[unit];
                    assert_eq!(owners[unit], index);
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shards: {seen:?}");
            let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
            assert!(spread <= *costs.iter().max().unwrap(), "{count}: {loads:?}");
        }
    }

    #[test]
    fn balances_by_cost_not_by_count() {
        // One heavy unit and four light ones: the heavy one is a shard on its own.
        let costs = [100, 10, 10, 10, 10];
        assert_eq!(assign(&costs, 2), [0, 1, 1, 1, 1]);
    }

    #[test]
    fn slurm_ranks_contiguous_stepped_and_listed_arrays() {
        let contiguous = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "3"),
            ("SLURM_ARRAY_TASK_MAX", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            from_scheduler(contiguous, None).unwrap(),
            Shard::new(2, 4).unwrap()
        );
        let stepped = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert_eq!(
            from_scheduler(stepped, None).unwrap(),
            Shard::new(3, 4).unwrap()
        );
        // --array=1,3,5,7: Slurm 22.05 says step 1.
        let listed = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ]);
        assert_eq!(
            from_scheduler(listed, None).unwrap(),
            Shard::new(1, 4).unwrap()
        );
    }

    #[test]
    fn slurm_refuses_an_array_it_cannot_rank() {
        let uneven = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        let err = from_scheduler(uneven, None).unwrap_err().to_string();
        assert!(err.contains("not evenly spaced"), "{err}");
        let disagreeing = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert!(from_scheduler(disagreeing, Some(4)).is_err());
    }

    #[test]
    fn kubernetes_index_needs_the_shard_count() {
        let pod = env_of(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            from_scheduler(&pod, Some(3)).unwrap(),
            Shard::new(2, 3).unwrap()
        );
        let err = from_scheduler(&pod, None).unwrap_err().to_string();
        assert!(err.contains("--shards N"), "{err}");
        assert!(
            from_scheduler(&pod, Some(2)).is_err(),
            "index 2 of 2 shards"
        );
        let counted = env_of(&[("JOB_COMPLETION_INDEX", "1"), ("VALUELENS_SHARDS", "2")]);
        assert_eq!(
            from_scheduler(counted, None).unwrap(),
            Shard::new(1, 2).unwrap()
        );
    }

    #[test]
    fn no_scheduler_is_said_plainly() {
        let err = from_scheduler(env_of(&[]), None).unwrap_err().to_string();
        assert!(err.contains("SLURM_ARRAY_TASK_ID"), "{err}");
        assert!(err.contains("JOB_COMPLETION_INDEX"), "{err}");
    }
}
