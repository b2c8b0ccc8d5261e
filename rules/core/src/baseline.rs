//! Robust baseline statistics (median, MAD, mean) on a fixed stack buffer, so
//! the hot path never allocates.
//!
//! Median and MAD follow clinical.md §6.2 (robust z-score, Iglewicz & Hoaglin:
//! M = 0.6745·(x − median)/MAD). The hot path does not call statrs: its order
//! statistics need an owned, allocated `Data` buffer per call. The tests check
//! these functions against statrs (median, MAD, and the constant 0.6745 as the
//! standard normal's 75th percentile).

/// Most samples a window keeps; beyond this the oldest are overwritten (a
/// 14-day window at 4 readings a day is 56 samples).
pub(crate) const MAX_SAMPLES: usize = 128;

/// The constant of the modified z-score (clinical.md §6.2).
pub(crate) const MODIFIED_Z_K: f64 = 0.6745;

/// A bounded sample of values.
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    buf: [f64; MAX_SAMPLES],
    pushed: usize,
}

impl Default for Samples {
    fn default() -> Self {
        Samples { buf: [0.0; MAX_SAMPLES], pushed: 0 }
    }
}

impl Samples {
    /// Adds a value (oldest first; past [`MAX_SAMPLES`] the oldest is replaced).
    pub(crate) fn push(&mut self, v: f64) {
        if let Some(slot) = self.buf.get_mut(self.pushed % MAX_SAMPLES) {
            *slot = v;
        }
        self.pushed = self.pushed.saturating_add(1);
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        self.pushed.min(MAX_SAMPLES)
    }

    fn values(&mut self) -> &mut [f64] {
        let n = self.len();
        self.buf.get_mut(..n).unwrap_or(&mut [])
    }

    /// Mean, if any value.
    pub(crate) fn mean(&mut self) -> Option<f64> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        Some(self.values().iter().sum::<f64>() / n as f64)
    }

    /// Median, if any value. Reorders the buffer.
    pub(crate) fn median(&mut self) -> Option<f64> {
        let v = self.values();
        median_in_place(v)
    }

    /// Median and median absolute deviation. Consumes the sample (the buffer
    /// holds the deviations afterwards).
    pub(crate) fn median_mad(&mut self) -> Option<(f64, f64)> {
        let v = self.values();
        let med = median_in_place(v)?;
        for x in v.iter_mut() {
            *x = (*x - med).abs();
        }
        let mad = median_in_place(v)?;
        Some((med, mad))
    }
}

fn median_in_place(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    let hi = *v.get(n / 2)?;
    if n % 2 == 1 { Some(hi) } else { Some((*v.get(n / 2 - 1)? + hi) / 2.0) }
}

/// Modified z-score of a change against a baseline MAD; infinite when the MAD
/// is zero and the change is not (a flat baseline never blocks an alert).
pub(crate) fn modified_z(change: f64, mad: f64) -> f64 {
    if mad > 0.0 {
        MODIFIED_Z_K * change.abs() / mad
    } else if change == 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        let mut s = Samples::default();
        for v in [1.0, 2.0, 3.0, 4.0, 100.0] {
            s.push(v);
        }
        assert_eq!(s.median_mad(), Some((3.0, 1.0)));
        let mut s = Samples::default();
        for v in [4.0, 1.0, 3.0, 2.0] {
            s.push(v);
        }
        assert_eq!(s.mean(), Some(2.5));
        assert_eq!(s.median(), Some(2.5));
        assert_eq!(Samples::default().median(), None);
    }

    #[test]
    fn keeps_most_recent_when_full() {
        let mut s = Samples::default();
        for i in 0..(MAX_SAMPLES + 10) {
            s.push(i as f64);
        }
        assert_eq!(s.len(), MAX_SAMPLES);
        assert_eq!(s.values().iter().cloned().fold(f64::INFINITY, f64::min), 10.0);
    }

    fn statrs_median(v: &[f64]) -> f64 {
        use statrs::statistics::{Data, Median};
        Data::new(v.to_vec()).median()
    }

    proptest::proptest! {
        /// Median and MAD agree with statrs on any sample that fits the window.
        #[test]
        fn median_and_mad_agree_with_statrs(v in proptest::collection::vec(-1e6f64..1e6, 1..=MAX_SAMPLES)) {
            let mut s = Samples::default();
            for x in &v {
                s.push(*x);
            }
            let (median, mad) = s.median_mad().expect("not empty");
            let expected_median = statrs_median(&v);
            let deviations: Vec<f64> = v.iter().map(|x| (x - expected_median).abs()).collect();
            proptest::prop_assert!((median - expected_median).abs() <= 1e-9 * expected_median.abs().max(1.0));
            proptest::prop_assert!((mad - statrs_median(&deviations)).abs() <= 1e-9 * mad.abs().max(1.0));
        }
    }

    #[test]
    fn modified_z_constant_is_the_normal_quartile() {
        use statrs::distribution::{ContinuousCDF, Normal};
        // MAD of a normal sample estimates sigma times the 75th percentile of N(0, 1).
        let q3 = Normal::new(0.0, 1.0).expect("standard normal").inverse_cdf(0.75);
        assert!((q3 - MODIFIED_Z_K).abs() < 5e-5, "0.6745 vs {q3}");
    }

    #[test]
    fn z_score() {
        assert!((modified_z(3.0, 0.6745) - 3.0).abs() < 1e-12);
        assert!(modified_z(1.0, 0.0).is_infinite());
        assert_eq!(modified_z(0.0, 0.0), 0.0);
    }
}
