# frozen_string_literal: true
#
# railwatch e2e reference app: a single-file Rails 6.1 application that runs from
# Debian's packages only (no Bundler). Used by tests/e2e/driver.py to reproduce
# connection-pool exhaustion, N+1 queries and Sidekiq failures and capture the
# real logs the app writes.
#
# Environment:
#   RW_LOG_SETUP   info (default) | debug | lograge | stdout8
#   RW_LOG_DIR     directory for production.log / sidekiq.log (default: ./log next to this file)
#   RW_REDIS_URL   Sidekiq Redis (default redis://127.0.0.1:6379/5)
#   RW_DB_POOL, RW_DB_CHECKOUT_TIMEOUT, RW_DB_NAME  (read by config/database.yml)
#   RW_BULLET      1 (default) enables Bullet (logs N+1 warnings through Rails.logger), 0 disables
#   RW_FIXED       comma list of bugs the "deploy" fixed (fix verification, regression tests):
#                  n_plus_one (PostsController#index eager-loads), always_fails (AlwaysFailsJob succeeds)
#   RW_QUERY_TAGS  1 appends marginalia query tags to every SQL statement
#                  (/*application:RailwatchE2E,controller:posts,action:index,request_id:…*/);
#                  0 (default) leaves SQL untagged. Rails 6.1 has no QueryLogs (7.0+).

require "logger"
require "pathname"
require "fileutils"

# --- Bullet shim (Debian's ruby-bullet 6.1.0 predates ActiveRecord 6.1) -----------
# Bullet 6.1.0 raises "Bullet does not support active_record 6.1.x yet" when it is
# required after ActiveRecord, and calls Bundler.bundle_path (fails without a Gemfile).
RW_BULLET = ENV.fetch("RW_BULLET", "1") == "1"
if RW_BULLET
  require "bullet/dependency"
  module Bullet
    module Dependency
      alias_method :rw_orig_active_record_version, :active_record_version
      def active_record_version
        if defined?(::ActiveRecord::VERSION) && ::ActiveRecord::VERSION::MAJOR == 6 && ::ActiveRecord::VERSION::MINOR == 1
          # treat 6.1 like 6.0 (upstream bullet's active_record61.rb is nearly identical)
          @active_record_version ||= "active_record60"
        else
          rw_orig_active_record_version
        end
      end
    end
  end
  module Bundler
    def self.bundle_path
      Pathname.new("/nonexistent-bundle-path")
    end
  end
end

require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "active_job/railtie"
require "redis"
Redis.silence_deprecations = true # Sidekiq 6.4 + redis-rb 4.8 warns on every brpop
require "sidekiq"
# `sidekiq -r app.rb` loads sidekiq before rails, so sidekiq.rb skips its Rails engine
# (it does `require "sidekiq/rails" if defined?(::Rails::Engine)`); load it explicitly.
require "sidekiq/rails"
require "bullet" if RW_BULLET
RW_QUERY_TAGS = ENV.fetch("RW_QUERY_TAGS", "0") == "1"
if RW_QUERY_TAGS
  # Debian's ruby-marginalia 1.11: its railtie tags AR statements with the controller/job
  require "marginalia/railtie"
  Marginalia::Comment.components = [:application, :controller, :action, :request_id]
end

RW_FIXED = ENV.fetch("RW_FIXED", "").split(",").map(&:strip)
RW_LOG_SETUP = ENV.fetch("RW_LOG_SETUP", "info")
unless %w[info debug lograge stdout8].include?(RW_LOG_SETUP)
  abort "RW_LOG_SETUP must be one of info, debug, lograge, stdout8 (got #{RW_LOG_SETUP.inspect})"
end
require "lograge" if RW_LOG_SETUP == "lograge"

RW_ROOT = File.expand_path(__dir__)
RW_LOG_DIR = File.expand_path(ENV.fetch("RW_LOG_DIR", File.join(RW_ROOT, "log")))
RW_REDIS_URL = ENV.fetch("RW_REDIS_URL", "redis://127.0.0.1:6379/5")
FileUtils.mkdir_p(RW_LOG_DIR)

# Rails 8's TaggedLogging.logger(STDOUT) uses ActiveSupport::Logger::SimpleFormatter:
# message + newline, no "I, [time #pid]  INFO -- :" prefix.
class MessageOnlyFormatter < ::Logger::Formatter
  def call(_severity, _time, _progname, msg)
    "#{String === msg ? msg : msg.inspect}\n"
  end
end

class RailwatchE2E < Rails::Application
  config.root = RW_ROOT
  config.load_defaults 6.1
  config.eager_load = true
  config.secret_key_base = "railwatch-e2e-not-a-secret-0123456789abcdef0123456789abcdef"
  config.consider_all_requests_local = false
  config.action_controller.perform_caching = true
  config.public_file_server.enabled = false
  config.hosts.clear
  config.active_job.queue_adapter = :sidekiq
  config.active_support.deprecation = :silence
  config.log_tags = [:request_id]

  log_file = File.join(RW_LOG_DIR, "production.log")
  case RW_LOG_SETUP
  when "info", "lograge"
    config.log_level = :info
    config.log_formatter = ::Logger::Formatter.new
  when "debug"
    config.log_level = :debug
    config.log_formatter = ::Logger::Formatter.new
    config.active_record.verbose_query_logs = true
  when "stdout8"
    config.log_level = :info
    config.log_formatter = MessageOnlyFormatter.new
  end
  # As Rails 6.1's bootstrap does for log/production.log: an append-mode IO with
  # autoflush (so no "# Logfile created on" header, and both processes can append).
  log_io = File.open(log_file, "a")
  log_io.binmode
  log_io.sync = true
  base_logger = ActiveSupport::Logger.new(log_io)
  base_logger.formatter = config.log_formatter
  config.logger = ActiveSupport::TaggedLogging.new(base_logger)

  if RW_LOG_SETUP == "lograge"
    config.lograge.enabled = true
    config.lograge.formatter = Lograge::Formatters::KeyValue.new
  end

  routes.append do
    get "/health" => "health#show"
    get "/posts" => "posts#index"
    get "/posts_fixed" => "posts#index_fixed"
    get "/slow_hold" => "slow#hold"
    get "/pool_stats" => "health#pool"
    get "/enqueue" => "jobs#enqueue"
    # accuracy scenarios (tests/accuracy): silent batch loads, a slow single query
    get "/posts_batch" => "posts#batch"
    get "/reports/slow" => "reports#slow"
  end
end

# --- Sidekiq -----------------------------------------------------------------------
Sidekiq.configure_client do |config|
  config.redis = { url: RW_REDIS_URL, size: 5 }
end
Sidekiq.configure_server do |config|
  config.redis = { url: RW_REDIS_URL }
  # Sidekiq 6 logs to STDOUT by default; a file here keeps its lines apart from the
  # process's own stdout (which only gets the "Booting Sidekiq" line).
  # RW_SIDEKIQ_LOG=production.log: one shared file written by web and worker processes.
  sidekiq_io = File.open(File.join(RW_LOG_DIR, ENV.fetch("RW_SIDEKIQ_LOG", "sidekiq.log")), "a")
  sidekiq_io.sync = true
  config.logger = Sidekiq::Logger.new(sidekiq_io)
  config.logger.level = RW_LOG_SETUP == "debug" ? ::Logger::DEBUG : ::Logger::INFO
end

# Initialise before defining models, controllers and jobs (as Rails' single-file
# bug-report templates do) so railtie on_load hooks (e.g. Sidekiq's sidekiq_options
# for ActiveJob) are in place. The Sidekiq server logger above must exist before this
# so that Sidekiq's railtie broadcasts Rails.logger to it, as in a real app.
Rails.application.initialize!

if RW_BULLET
  Bullet.enable = true
  Bullet.rails_logger = true
  Bullet.raise = false
end

# --- Models ------------------------------------------------------------------------
class ApplicationRecord < ActiveRecord::Base
  self.abstract_class = true
end

class Author < ApplicationRecord
  has_many :posts
end

class Post < ApplicationRecord
  belongs_to :author
  has_many :comments
end

class Comment < ApplicationRecord
  belongs_to :post
end

module RailwatchSchema
  LOCK_KEY = 4_242_001

  def self.ensure!
    conn = ActiveRecord::Base.connection
    conn.execute("SELECT pg_advisory_lock(#{LOCK_KEY})")
    begin
      unless conn.table_exists?(:posts)
        ActiveRecord::Schema.verbose = false
        ActiveRecord::Schema.define do
          create_table :authors, if_not_exists: true do |t|
            t.string :name, null: false
            t.timestamps
          end
          create_table :posts, if_not_exists: true do |t|
            t.references :author, null: false, foreign_key: true
            t.string :title, null: false
            t.text :body
            t.timestamps
          end
          create_table :comments, if_not_exists: true do |t|
            t.references :post, null: false, foreign_key: true
            t.text :body
            t.timestamps
          end
        end
      end
      if Post.count.zero?
        ActiveRecord::Base.transaction do
          authors = (1..30).map { |i| Author.create!(name: "Author #{i}") }
          authors.each_with_index do |author, i|
            post = Post.create!(author: author, title: "Post #{i + 1}", body: "Body of post #{i + 1}")
            2.times { |c| Comment.create!(post: post, body: "Comment #{c + 1} on post #{i + 1}") }
          end
        end
      end
    ensure
      conn.execute("SELECT pg_advisory_unlock(#{LOCK_KEY})")
    end
  end
end

# --- Controllers -------------------------------------------------------------------
class ApplicationController < ActionController::Base
  protect_from_forgery with: :null_session
end

class HealthController < ApplicationController
  # No database access: answers even while the pool is exhausted.
  def show
    render plain: "ok"
  end

  def pool
    render json: ActiveRecord::Base.connection_pool.stat
  end
end

class PostsController < ApplicationController
  # N+1: one query for the posts, then one lazy Author load per post.
  def index
    return index_fixed if RW_FIXED.include?("n_plus_one") # the deploy that fixed it: same action, eager-loaded

    posts = Post.order(:id).limit(params.fetch(:limit, 30).to_i)
    rows = posts.map { |post| { id: post.id, title: post.title, author: post.author.name } }
    render json: rows
  end

  # Same page, eager-loaded: two queries in total.
  def index_fixed
    posts = Post.includes(:author).order(:id).limit(params.fetch(:limit, 30).to_i)
    rows = posts.map { |post| { id: post.id, title: post.title, author: post.author.name } }
    render json: rows
  end
end

class PostsController
  # Batch loads (IN (...)) and query-cache repeats: many SQL lines, no N+1.
  def batch
    posts = Post.preload(:author, :comments).order(:id).limit(params.fetch(:limit, 30).to_i).to_a
    rows = posts.map { |post| { id: post.id, author: post.author.name, comments: post.comments.size } }
    5.times { Author.find(1) } # the first loads, the next four are CACHE hits
    render json: rows
  end
end

class ReportsController < ApplicationController
  # One slow query (1.5 s in the database), nothing repeated.
  def slow
    seconds = [[params.fetch(:s, 1.5).to_f, 0.0].max, 10.0].min
    ActiveRecord::Base.connection.select_value("SELECT pg_sleep(#{seconds})")
    render json: { slept: seconds }
  end
end

class SlowController < ApplicationController
  # Holds a pooled connection for `s` seconds (a slow query).
  def hold
    seconds = [[params.fetch(:s, 3).to_f, 0.0].max, 30.0].min
    ActiveRecord::Base.connection.execute("SELECT pg_sleep(#{seconds})")
    render json: { slept: seconds }
  end
end

class JobsController < ApplicationController
  JOBS = %w[OkJob FlakyOnceJob AlwaysFailsJob LongRunningJob ReportExportJob
            InvoiceSyncJob WebhookDeliveryWorker ShortRetryWorker RetryOnJob FlakyOnceActiveJob].freeze

  def enqueue
    name = params.fetch(:job)
    return render(json: { error: "unknown job #{name}" }, status: :unprocessable_entity) unless JOBS.include?(name)

    klass = name.constantize
    n = [[params.fetch(:n, 1).to_i, 1].max, 200].min
    arg = params[:arg]
    ids = Array.new(n) do |i|
      job_arg = arg || "#{request.request_id[0, 8]}-#{i}"
      if klass < ActiveJob::Base && params[:secs]
        klass.perform_later(job_arg, params[:secs].to_f).job_id
      elsif klass < ActiveJob::Base
        klass.perform_later(job_arg).job_id
      else
        klass.perform_async(job_arg)
      end
    end
    render json: { job: name, ids: ids }
  end
end

# --- Jobs --------------------------------------------------------------------------
class PaymentGatewayError < StandardError; end

# Plain Sidekiq worker that always fails: 1 retry ~1-10 s later, then the dead set.
class AlwaysFailsJob
  include Sidekiq::Worker
  sidekiq_options retry: 1
  sidekiq_retry_in { |_count, _exception| 1 }

  def perform(order_ref)
    return Post.count if RW_FIXED.include?("always_fails") # the fixed job: the gateway call handled

    raise PaymentGatewayError, "gateway returned 502 Bad Gateway for order #{order_ref}"
  end
end

# Plain Sidekiq worker that fails on its first attempt only (a Redis marker per argument).
class FlakyOnceJob
  include Sidekiq::Worker
  sidekiq_options retry: 3
  sidekiq_retry_in { |_count, _exception| 1 }

  def perform(ref)
    first = Sidekiq.redis { |r| r.set("rw:flaky:#{ref}", "1", nx: true, ex: 3600) }
    raise Timeout::Error, "upstream inventory service timed out for #{ref}" if first

    Post.count
  end
end

# ActiveJob that does a little DB work.
class OkJob < ActiveJob::Base
  queue_as :default

  def perform(ref)
    Post.where(id: (ref.to_s.sum % 30) + 1).pluck(:title)
  end
end

# ActiveJob that takes a while.
class LongRunningJob < ActiveJob::Base
  queue_as :default

  def perform(_ref, seconds = nil)
    sleep((seconds || ENV.fetch("RW_LONG_JOB_SECONDS", 8)).to_f)
  end
end

# ActiveJob that always fails with a NoMethodError; goes to the dead set after its
# single Sidekiq retry (Sidekiq's default backoff: ~15-35 s).
class ReportExportJob < ActiveJob::Base
  queue_as :default
  sidekiq_options retry: 1

  def perform(ref)
    report = { ref: ref, owner: nil }
    report[:owner].email # NoMethodError
  end
end

# --- Jobs for the accuracy scenarios (tests/accuracy) --------------------------------
class UpstreamUnavailableError < StandardError; end

# ActiveJob-wrapped, Sidekiq's default retries (25, backoff 15 s, 31 s, ...): a storm
# that is still retrying, nothing dead, when a short log ends.
class InvoiceSyncJob < ActiveJob::Base
  queue_as :default

  def perform(ref)
    raise UpstreamUnavailableError, "billing API returned 503 for invoice #{ref}"
  end
end

# Native Sidekiq worker with the default retries: the same storm without ActiveJob.
class WebhookDeliveryWorker
  include Sidekiq::Worker

  def perform(ref)
    raise UpstreamUnavailableError, "webhook endpoint refused connection for delivery #{ref}"
  end
end

# Native worker with a short retry budget (retry: 2, 1 s apart): dead within seconds.
class ShortRetryWorker
  include Sidekiq::Worker
  sidekiq_options retry: 2
  sidekiq_retry_in { |_count, _exception| 1 }

  def perform(ref)
    raise PaymentGatewayError, "gateway returned 504 Gateway Timeout for order #{ref}"
  end
end

# ActiveJob's own retries (retry_on ... attempts: 2), then Sidekiq's (retry: 0: dead at once).
class RetryOnJob < ActiveJob::Base
  queue_as :default
  sidekiq_options retry: 0
  retry_on UpstreamUnavailableError, attempts: 2, wait: 1

  def perform(ref)
    raise UpstreamUnavailableError, "search index unavailable for document #{ref}"
  end
end

# ActiveJob that fails on its first attempt only, then succeeds on Sidekiq's retry.
class FlakyOnceActiveJob < ActiveJob::Base
  queue_as :default
  sidekiq_options retry: 3

  def perform(ref)
    first = Sidekiq.redis { |r| r.set("rw:flaky-aj:#{ref}", "1", nx: true, ex: 3600) }
    raise Timeout::Error, "upstream inventory service timed out for #{ref}" if first

    Post.count
  end
end

RailwatchSchema.ensure! unless ENV["RW_SKIP_SCHEMA"] == "1"
