package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// scraper reports what is read at scrape time: queue depths and in-flight
// jobs per pipeline, worker processes by state and their memory.
type scraper struct {
	src Sources

	inFlight, ready, delayed, reserved, consuming *prometheus.Desc
	oldest                                        *prometheus.Desc
	workers, rssTotal, rssMax                     *prometheus.Desc
}

func newScraper(src Sources) *scraper {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &scraper{
		src:       src,
		inFlight:  desc("jobs_in_flight", "Jobs received and not yet settled.", "pipeline"),
		ready:     desc("queue_ready", "Jobs waiting to be received: local queue depth (memory), queue depth (AMQP), ApproximateNumberOfMessages (SQS), consumer lag (Kafka). Absent when the driver cannot tell.", "pipeline", "driver"),
		delayed:   desc("queue_delayed", "Jobs waiting for their delay to pass. Absent when the driver cannot tell.", "pipeline", "driver"),
		reserved:  desc("queue_reserved", "Jobs handed out by the broker and not yet settled.", "pipeline", "driver"),
		oldest:    desc("queue_oldest_age_seconds", "Age of the oldest job waiting to be received (since its push or the end of its delay), 0 when none waits. Absent when the driver cannot tell (memory, boltdb and kafka can; kafka sees only the records it has fetched).", "pipeline", "driver"),
		consuming: desc("pipeline_consuming", "1 while the pipeline is consuming, 0 while it is paused, not started or its broker is down.", "pipeline"),
		workers:   desc("workers", "Worker processes by state (starting, ready, working, stopping).", "state"),
		rssTotal:  desc("workers_rss_bytes", "Resident memory of all worker processes."),
		rssMax:    desc("worker_rss_max_bytes", "Resident memory of the largest worker process."),
	}
}

// Describe implements prometheus.Collector.
func (s *scraper) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.inFlight, s.ready, s.delayed, s.reserved, s.oldest, s.consuming, s.workers, s.rssTotal, s.rssMax} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A Stat error (the manager is
// stopping) leaves the pipeline gauges out of this scrape.
func (s *scraper) Collect(ch chan<- prometheus.Metric) {
	if s.src.Stat != nil {
		ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
		stats, err := s.src.Stat(ctx)
		cancel()
		if err == nil {
			for _, st := range stats {
				ch <- prometheus.MustNewConstMetric(s.inFlight, prometheus.GaugeValue, float64(st.Active), st.Pipeline)
				if st.Ready >= 0 {
					ch <- prometheus.MustNewConstMetric(s.ready, prometheus.GaugeValue, float64(st.Ready), st.Pipeline, st.Driver)
				}
				if st.Delayed >= 0 {
					ch <- prometheus.MustNewConstMetric(s.delayed, prometheus.GaugeValue, float64(st.Delayed), st.Pipeline, st.Driver)
				}
				if st.Reserved >= 0 {
					ch <- prometheus.MustNewConstMetric(s.reserved, prometheus.GaugeValue, float64(st.Reserved), st.Pipeline, st.Driver)
				}
				if st.OldestAge >= 0 {
					ch <- prometheus.MustNewConstMetric(s.oldest, prometheus.GaugeValue, st.OldestAge.Seconds(), st.Pipeline, st.Driver)
				}
				consuming := 0.0
				if st.Consuming {
					consuming = 1
				}
				ch <- prometheus.MustNewConstMetric(s.consuming, prometheus.GaugeValue, consuming, st.Pipeline)
			}
		}
	}
	if s.src.Workers != nil {
		byState := map[string]int{"starting": 0, "ready": 0, "working": 0, "stopping": 0}
		var total, biggest uint64
		for _, w := range s.src.Workers() {
			if w.State == "dead" {
				continue
			}
			byState[w.State]++
			total += w.RSS
			biggest = max(biggest, w.RSS)
		}
		for state, n := range byState {
			ch <- prometheus.MustNewConstMetric(s.workers, prometheus.GaugeValue, float64(n), state)
		}
		ch <- prometheus.MustNewConstMetric(s.rssTotal, prometheus.GaugeValue, float64(total))
		ch <- prometheus.MustNewConstMetric(s.rssMax, prometheus.GaugeValue, float64(biggest))
	}
}
