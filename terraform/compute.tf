# Compute: a launch template and an Auto Scaling group over both app subnets.
#
# Every instance boots the current Amazon Linux 2023 image, downloads the release
# tarball, checks its SHA-256, reads the database secret with its own role and
# starts the service through the tarball's scripts/run.sh (see
# user_data.sh.tftpl). A change to the artifact, the image or any other launch
# setting makes a new template version, which starts a rolling instance refresh
# (`terraform apply` starts it and returns; it does not wait for the refresh).

data "aws_ssm_parameter" "ami" {
  name = var.ami_ssm_parameter
}

data "aws_default_tags" "current" {}

locals {
  # When the database password is rotated, the instances of the first availability zone
  # restart at once and those of the second this much later. An instance is out of the
  # load balancer's rotation for the drain delay, the end of its in-flight requests (at
  # most drain_seconds) and healthy_threshold health checks; instances notice the new
  # secret up to one poll (70 s) apart. So one zone keeps serving throughout.
  rotation_restart_slot_seconds = (local.drain_delay_seconds + var.drain_seconds +
  local.health_check.interval * local.health_check.healthy_threshold + 70)

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    artifact_url             = var.artifact_url
    artifact_sha256          = lower(var.artifact_sha256)
    region                   = data.aws_region.current.name
    db_secret_arn            = local.db_secret_arn
    db_host                  = aws_db_instance.main.address
    db_port                  = local.db_port
    db_name                  = var.db_name
    db_ca_bundle_url         = local.db_ca_bundle_url
    public_url               = local.public_url
    drain_seconds            = var.drain_seconds
    drain_delay_secs         = local.drain_delay_seconds
    header_read_timeout_secs = local.header_read_timeout_seconds
    app_port                 = local.app_port
    availability_zones       = join(" ", local.azs)
    restart_slot_secs        = local.rotation_restart_slot_seconds
  })

  # Default tags do not reach instances or volumes launched by Auto Scaling.
  instance_tags = merge(data.aws_default_tags.current.tags, { Name = "${local.name}-app" })
}

resource "aws_launch_template" "app" {
  name_prefix            = "${local.name}-app-"
  description            = "${local.name} application servers"
  image_id               = data.aws_ssm_parameter.ami.insecure_value
  instance_type          = var.instance_type
  update_default_version = true
  ebs_optimized          = true
  user_data              = base64encode(local.user_data)

  iam_instance_profile {
    arn = aws_iam_instance_profile.app.arn
  }

  network_interfaces {
    associate_public_ip_address = false
    delete_on_termination       = true
    security_groups             = [aws_security_group.app.id]
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.instance_tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.instance_tags
  }

  lifecycle {
    precondition {
      condition     = startswith(data.aws_ssm_parameter.ami.insecure_value, "ami-")
      error_message = "The AMI parameter did not hold an AMI ID."
    }
  }
}

resource "aws_autoscaling_group" "app" {
  name_prefix         = "${local.name}-app-"
  min_size            = var.min_size
  max_size            = var.max_size
  vpc_zone_identifier = aws_subnet.app[*].id
  target_group_arns   = [aws_lb_target_group.app.arn]

  # Replace instances the load balancer finds unhealthy, after they had time to
  # boot and start.
  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period
  default_instance_warmup   = var.health_check_grace_period

  # desired_capacity is left to the scaling policy (it starts at min_size);
  # setting it here would undo every scale-out on the next apply.

  launch_template {
    id      = aws_launch_template.app.id
    version = aws_launch_template.app.latest_version
  }

  # A new template version launches replacements first (up to twice the capacity), and
  # retires old instances only once the new ones pass /readyz. No auto_rollback: the
  # provider points the group at the new version before it starts the refresh
  # (hashicorp/terraform-provider-aws#34189), so a "rollback" would relaunch the same
  # version. To roll back, apply the previous artifact_url and artifact_sha256 (README).
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = var.instance_refresh_min_healthy_percentage
      max_healthy_percentage = var.instance_refresh_min_healthy_percentage + 100
      instance_warmup        = var.health_check_grace_period
      skip_matching          = true
      auto_rollback          = false
    }
  }

  enabled_metrics = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupMinSize",
    "GroupMaxSize",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
  ]

  dynamic "tag" {
    for_each = local.instance_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }

  lifecycle {
    precondition {
      condition     = length(distinct([for s in aws_subnet.app : s.availability_zone])) >= 2
      error_message = "The app subnets must span two availability zones."
    }
  }
}

resource "aws_autoscaling_policy" "cpu" {
  name                   = "${local.name}-cpu-target"
  autoscaling_group_name = aws_autoscaling_group.app.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.cpu_target_percent
  }
}
